"""The order training data is seen in, fixed by the seed and the epoch alone."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A random permutation of ``range(size)`` per epoch, drawn from ``seed + epoch``.

    It depends on nothing else (not on the global RNG, not on what ran before), so a run
    resumed at epoch k sees the orders an uninterrupted run saw. Lightning calls
    :meth:`set_epoch` before every epoch, as it does for a ``DistributedSampler``.
    """

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())
