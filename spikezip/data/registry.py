"""Every dataset by the name configs use (``data=cifar10``), with the facts a setting is
checked against: its task, its input channels, the options it takes. The dataset
modules below know nothing of this list; a new dataset is one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from spikezip.data.base import DatasetInfo
from spikezip.data.classification import build_classification
from spikezip.data.detection import build_detection, voc_image_sets

SIZES = ("image_size", "max_objects")  # the detection sets' input side and object limit
SPLITS = ("train_split", "val_split")  # which image sets of VOC / COCO


def _voc_split(key: str, value: str) -> None:
    voc_image_sets(key, value, one=key == "val_split")


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: ``build(name, root, download, augment, seed, *, train_size, val_size,
    **options)`` gives ``(train, val, info)``; ``options`` are the keywords it takes
    besides those; ``check_split(key, value)`` raises ValueError for an image set it
    does not have."""

    task: str
    in_channels: int
    build: Callable[..., tuple[Dataset, Dataset, DatasetInfo]]
    options: tuple[str, ...] = ()
    check_split: Callable[[str, str], None] | None = None
    pixels: bool = False  # its info says how its integer pixels are stored (integer weights)


DATASETS = {
    "mnist5k": DatasetEntry("classification", 1, build_classification, pixels=True),
    "digits": DatasetEntry("classification", 1, build_classification, pixels=True),
    "fashion_mnist": DatasetEntry("classification", 1, build_classification, pixels=True),
    "cifar10": DatasetEntry("classification", 3, build_classification, pixels=True),
    "cifar100": DatasetEntry("classification", 3, build_classification, pixels=True),
    "imagenet": DatasetEntry("classification", 3, build_classification, pixels=True),
    "mnist_detection": DatasetEntry("detection", 3, build_detection, SIZES),
    "voc": DatasetEntry("detection", 3, build_detection, SIZES + SPLITS, _voc_split),
    "coco": DatasetEntry("detection", 3, build_detection, SIZES + SPLITS),
}
DETECTION_DATASETS = tuple(name for name, e in DATASETS.items() if e.task == "detection")


def dataset_entry(name: str) -> DatasetEntry:
    """The entry of dataset ``name``.

    Raises:
        ValueError: an unknown name, with the known ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {tuple(DATASETS)}")
    return DATASETS[name]


def taking(option: str) -> list[str]:
    """The datasets that take ``option`` (e.g. ``image_size``)."""
    return [name for name, entry in DATASETS.items() if option in entry.options]


def build_datasets(
    name: str,
    root: str | Path = "data",
    download: bool = False,
    augment: bool = True,
    seed: int = 0,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    **options,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``(train, val, info)`` for dataset ``name`` (one of :data:`DATASETS`); with
    ``train_size`` / ``val_size``, seeded random subsets of that many samples (by ``seed``).
    ``options``: the keywords only some sets take (detection sets: ``image_size``,
    ``max_objects``; VOC and COCO also ``train_split``, ``val_split``:
    :func:`spikezip.data.detection.build_detection`); None means the set's default.

    Raises:
        DatasetNotFoundError: files missing under ``root``; says where it looked.
        ValueError: an unknown name, or an option the set does not take.
    """
    name = str(name)
    entry = dataset_entry(name)
    given = {key: value for key, value in options.items() if value is not None}
    for key in given:
        if key not in entry.options:
            raise ValueError(f"{key} applies to {taking(key)}, not to {name}")
    sizes = {"train_size": train_size, "val_size": val_size}
    return entry.build(name, root, download, augment, seed, **sizes, **given)
