"""The datasets SpikeZIP trains on, by name: train / validation splits and their shapes.

``mnist5k`` (embedded, default) and ``digits`` need no files. ``cifar10`` / ``cifar100``
read torchvision's on-disk format under ``root`` (``download=True`` fetches it for users
online); ``imagenet`` reads an ``ImageFolder`` tree ``root/train/<class>/*`` and
``root/val/<class>/*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from spikezip.data.mnist5k import load_mnist5k
from spikezip.errors import SpikeZIPError

DATASETS = ("mnist5k", "digits", "cifar10", "cifar100", "imagenet")

_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class DatasetNotFoundError(SpikeZIPError, FileNotFoundError):
    """A dataset that is not where the configuration says; the message says how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its inputs and labels."""

    num_classes: int
    in_channels: int
    image_size: int


INFO = {
    "mnist5k": DatasetInfo(10, 1, 28),
    "digits": DatasetInfo(10, 1, 8),
    "cifar10": DatasetInfo(10, 3, 32),
    "cifar100": DatasetInfo(100, 3, 32),
    "imagenet": DatasetInfo(1000, 3, 224),
}


def _digits(seed: int) -> tuple[Dataset, Dataset]:
    """scikit-learn's 1,797 8x8 digits, values 0..16 scaled to [0, 1]; seeded 80/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    test, train = order[: len(y) // 5], order[len(y) // 5 :]
    return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test])


def _cifar(name: str, root: Path, download: bool, augment: bool) -> tuple[Dataset, Dataset]:
    import torchvision
    from torchvision import transforms as T

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    mean, std = _CIFAR_STATS[name]
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    train_tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    try:
        train = cls(root, train=True, download=download, transform=T.Compose(train_tf + normalize))
        val = cls(root, train=False, download=download, transform=T.Compose(normalize))
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFoundError(
            f"{name} not found (or corrupted) under {root.resolve()}: expected "
            f"{root / cls.base_folder}/ as extracted from {cls.url}. Run with "
            "data.download=true on a machine with internet, or set data.root to where it is."
        ) from err
    except OSError as err:
        if not download:
            raise DatasetNotFoundError(
                f"{name} under {root.resolve()} cannot be read: {err}"
            ) from err
        # URLError, socket and HTTP errors: the download failed
        raise DatasetNotFoundError(
            f"downloading {name} from {cls.url} failed ({err}). Without internet, download "
            "that archive on another machine, extract it so that "
            f"{root.resolve() / cls.base_folder}/ exists, and run again without "
            "data.download=true (or set data.root to where it is)."
        ) from err
    return train, val


def _imagenet(root: Path, image_size: int) -> tuple[Dataset, Dataset]:
    from torchvision import datasets
    from torchvision import transforms as T

    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DatasetNotFoundError(
                f"ImageNet split '{split}' not found: expected {(root / split).resolve()}/"
                "<class>/<image> (an ImageFolder tree, e.g. from the ILSVRC2012 archives with "
                "the validation images sorted into class folders). Set data.root."
            )
    normalize = T.Normalize(*_IMAGENET_STATS)
    train_tf = T.Compose(
        [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize]
    )
    resize = round(image_size * 256 / 224)
    val_tf = T.Compose([T.Resize(resize), T.CenterCrop(image_size), T.ToTensor(), normalize])
    train = datasets.ImageFolder(root / "train", train_tf)
    val = datasets.ImageFolder(root / "val", val_tf)
    if train.classes != val.classes:  # ImageFolder numbers the classes of each split itself
        differ = sorted(set(train.classes) ^ set(val.classes))[:5]
        raise DatasetNotFoundError(
            f"ImageNet under {root.resolve()}: train/ and val/ hold different class folders "
            f"(e.g. {differ}), so their labels would not match"
        )
    return train, val


def build_datasets(
    name: str,
    root: str | Path = "data",
    download: bool = False,
    augment: bool = True,
    seed: int = 0,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``(train, val, info)`` for dataset ``name`` (one of :data:`DATASETS`).

    Raises:
        DatasetNotFoundError: files missing under ``root``; says where it looked.
    """
    name = str(name)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    root = Path(root)
    if name == "mnist5k":
        train, val = load_mnist5k(seed=seed)
    elif name == "digits":
        train, val = _digits(seed)
    elif name in _CIFAR_STATS:
        train, val = _cifar(name, root, download, augment)
    else:
        train, val = _imagenet(root, INFO["imagenet"].image_size)
    info = INFO[name]
    if name == "imagenet":
        info = DatasetInfo(len(train.classes), 3, info.image_size)
    return train, val, info
