"""The classification datasets: train / validation splits of labelled images.

``mnist5k`` (embedded, default) and ``digits`` need no files. ``fashion_mnist``,
``cifar10`` and ``cifar100`` read torchvision's on-disk format under ``root``
(``download=True`` fetches it for users online; Fashion-MNIST is also taken from the
Debian/Ubuntu package ``dataset-fashion-mnist``); ``imagenet`` reads an ``ImageFolder``
tree ``root/train/<class>/*`` and ``root/val/<class>/*``. Any of them can be cut to a
seeded random subset (:func:`subset`), so a study fits a CPU budget.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch.utils.data import Dataset, TensorDataset
from torchvision import datasets
from torchvision import transforms as T
from torchvision.datasets import FashionMNIST

from spikezip.data.base import DatasetInfo, DatasetNotFoundError, extract, subset
from spikezip.data.mnist5k import MNIST_MEAN, MNIST_STD, load_mnist5k

# Where Debian/Ubuntu's dataset-fashion-mnist package puts the four original .gz files.
FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
_FASHION_MNIST_STATS = ((0.2860,), (0.3530,))

_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _pixels(stats, top: int = 255) -> dict:
    return {"mean": list(stats[0]), "std": list(stats[1]), "max": top}


INFO = {
    "mnist5k": DatasetInfo(10, 1, 28, _pixels(((MNIST_MEAN,), (MNIST_STD,)))),
    "digits": DatasetInfo(10, 1, 8, _pixels(((0.0,), (1.0,)), 16)),  # 0..16, scaled to [0, 1]
    "fashion_mnist": DatasetInfo(10, 1, 28, _pixels(_FASHION_MNIST_STATS)),
    "cifar10": DatasetInfo(10, 3, 32, _pixels(_CIFAR_STATS["cifar10"])),
    "cifar100": DatasetInfo(100, 3, 32, _pixels(_CIFAR_STATS["cifar100"])),
    "imagenet": DatasetInfo(1000, 3, 224, _pixels(_IMAGENET_STATS)),
}


def _digits(seed: int) -> tuple[Dataset, Dataset]:
    """scikit-learn's 1,797 8x8 digits, values 0..16 scaled to [0, 1]; seeded 80/20 split."""
    # scikit-learn (slow to import) loads only for its digits.
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    test, train = order[: len(y) // 5], order[len(y) // 5 :]
    return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test])


def _cifar(name: str, root: Path, download: bool, augment: bool) -> tuple[Dataset, Dataset]:

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


def _fashion_mnist(root: Path, download: bool, augment: bool) -> tuple[Dataset, Dataset]:
    """torchvision's ``FashionMNIST`` under ``root``. Without it there (and without
    ``download``), the system package's ``.gz`` files are extracted into ``root`` first,
    as a download would be."""

    raw = root / FashionMNIST.__name__ / "raw"
    gzipped = [name for name, _ in FashionMNIST.resources]  # the four *-idx?-ubyte.gz
    files = [raw / name.removesuffix(".gz") for name in gzipped]
    if not download and not all(f.is_file() for f in files):
        system = [FASHION_MNIST_SYSTEM / name for name in gzipped]
        if not all(f.is_file() for f in system):
            raise DatasetNotFoundError(
                f"fashion_mnist not found: looked for {', '.join(f.name for f in files)} in "
                f"{raw.resolve()}/ and for their .gz files in {FASHION_MNIST_SYSTEM}/. Install "
                "the Debian/Ubuntu package there (make fashion-mnist: apt-get install "
                "dataset-fashion-mnist), run with data.download=true on a machine with "
                f"internet, or put the four files of {FashionMNIST.mirrors[0]} in {raw.resolve()}/."
            )
        extract(system, raw)
    normalize = [T.ToTensor(), T.Normalize(*_FASHION_MNIST_STATS)]
    train_tf = [T.RandomCrop(28, padding=2), T.RandomHorizontalFlip()] if augment else []
    try:
        train = FashionMNIST(root, True, T.Compose(train_tf + normalize), download=download)
        val = FashionMNIST(root, False, T.Compose(normalize), download=download)
    except (RuntimeError, OSError, ValueError) as err:
        if download and not all(f.is_file() for f in files):  # URLError and the like
            raise DatasetNotFoundError(
                f"downloading fashion_mnist failed ({err}). Without internet: apt-get install "
                f"dataset-fashion-mnist, or put the four files of {FashionMNIST.mirrors[0]} in "
                f"{raw.resolve()}/, and run without data.download=true."
            ) from err
        raise DatasetNotFoundError(  # a truncated or foreign file
            f"fashion_mnist under {raw.resolve()} cannot be read: {err}"
        ) from err
    return train, val


def _imagenet(root: Path, image_size: int) -> tuple[Dataset, Dataset]:

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


def build_classification(
    name: str,
    root: str | Path = "data",
    download: bool = False,
    augment: bool = True,
    seed: int = 0,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``(train, val, info)`` of classification set ``name`` (what
    :func:`spikezip.data.build_datasets` returns for it), cut to seeded random subsets of
    ``train_size`` / ``val_size`` samples if given."""
    root = Path(root)
    if name == "mnist5k":
        train, val = load_mnist5k(seed=seed)
    elif name == "digits":
        train, val = _digits(seed)
    elif name == "fashion_mnist":
        train, val = _fashion_mnist(root, download, augment)
    elif name in _CIFAR_STATS:
        train, val = _cifar(name, root, download, augment)
    else:
        train, val = _imagenet(root, INFO["imagenet"].image_size)
    info = INFO[name]
    if name == "imagenet":
        info = DatasetInfo(len(train.classes), 3, info.image_size, info.pixels)
    return subset(train, train_size, seed), subset(val, val_size, seed), info
