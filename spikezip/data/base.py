"""What every dataset module shares: the error for a missing dataset, what a model learns
of its inputs, seeded subsets and the extraction of archives."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from spikezip.errors import SpikeZIPError
from spikezip.io import decompress

log = logging.getLogger(__name__)


class DatasetNotFoundError(SpikeZIPError, FileNotFoundError):
    """A dataset that is not where the configuration says; the message says how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its inputs and labels."""

    num_classes: int
    in_channels: int
    image_size: int
    # How the stored integer pixels become the input: {"mean": [...], "std": [...],
    # "max": 255} for x = (p / max - mean) / std; None when the input is not such images.
    pixels: dict | None = None
    task = "classification"


def subset(dataset: Dataset, size: int | None, seed: int) -> Dataset:
    """A seeded random ``size`` of ``dataset``'s samples, in their stored order (all of it
    when ``size`` is None or not smaller)."""
    if size is None or size >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(order[:size].tolist()))


def extract(archives: list[Path], folder: Path) -> None:
    """Decompress ``.gz`` files into ``folder``, each appearing whole or not at all."""
    log.info("extracting %s into %s", archives[0].parent, folder)
    for archive in archives:
        decompress(archive, folder / archive.name.removesuffix(".gz"))
