"""The embedded MNIST-5k split."""

import pytest
import torch

from spikezip.data import load_mnist5k


def test_mnist5k_split_is_fixed_balanced_and_normalised():
    train, test = load_mnist5k(seed=0)
    assert len(train) == 4000 and len(test) == 1000
    x, y = test.tensors
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(train.tensors[0].mean())) < 0.1  # normalised with MNIST's mean / std
    assert set(torch.bincount(y).tolist()) != {100}  # a random split, not a stratified copy
    assert torch.bincount(torch.cat([train.tensors[1], y])).tolist() == [500] * 10
    again, _ = load_mnist5k(seed=0)
    assert torch.equal(again.tensors[1], train.tensors[1])
    other, _ = load_mnist5k(seed=1)
    assert not torch.equal(other.tensors[1], train.tensors[1])


def test_bad_test_size():
    with pytest.raises(ValueError, match="test_size"):
        load_mnist5k(test_size=5000)
