"""Detection datasets: an embedded synthetic set, PASCAL VOC and COCO.

Every sample is ``(image [C, S, S] float32, boxes [max_objects, 6] float32)``: the image
resized to ``S x S`` and normalised; one row per object, ``(label, x1, y1, x2, y2,
difficult)`` in pixels of the resized image, padded with rows of label ``-1``. Fixed-size
targets keep the default collate and every ``.to(device)`` of the pipeline working; an
image with more objects than ``max_objects`` is an error, never a silent cut.
``difficult`` marks objects a benchmark ignores (VOC's difficult flag, COCO's crowds).

- ``mnist_detection`` (embedded, no files): 1-4 MNIST-5k digits at random positions and
  scales on a black canvas, generated from the seed and the sample index (the same
  sample every time). Training images use the digits of MNIST-5k's training split,
  validation images those of its test split.
- ``voc``: ``torchvision.datasets.VOCDetection`` under ``root`` (``VOCdevkit/VOC2007``, ...).
- ``coco``: ``torchvision.datasets.CocoDetection``: ``root/{train2017,val2017}/*.jpg`` and
  ``root/annotations/instances_{train2017,val2017}.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset
from torchvision import tv_tensors
from torchvision.datasets import CocoDetection, VOCDetection
from torchvision.ops import box_iou
from torchvision.transforms import v2 as T

from spikezip.data.base import DatasetNotFoundError, subset
from spikezip.data.mnist5k import MNIST_MEAN, MNIST_STD, load_mnist5k

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# Columns of a target row.
LABEL, BOX, DIFFICULT = 0, slice(1, 5), 5


@dataclass(frozen=True)
class DetectionInfo:
    """What a detector needs to know about its data (``name`` picks its anchors)."""

    num_classes: int
    in_channels: int
    image_size: int
    classes: tuple[str, ...]
    name: str
    task = "detection"


# Per set: (image side, max objects per image) unless data.image_size / data.max_objects say.
DEFAULTS = {"mnist_detection": (128, 8), "voc": (416, 64), "coco": (416, 128)}


def pad_targets(labels: Tensor, boxes: Tensor, difficult: Tensor, max_objects: int) -> Tensor:
    """``[max_objects, 6]`` rows ``(label, x1, y1, x2, y2, difficult)``, padded with ``-1``.

    Raises:
        ValueError: more objects than ``max_objects``.
    """
    count = len(labels)
    if count > max_objects:
        raise ValueError(
            f"an image has {count} objects, more than data.max_objects={max_objects}; raise it"
        )
    out = torch.full((max_objects, 6), -1.0)
    out[:count, LABEL] = labels.float()
    out[:count, BOX] = boxes.float()
    out[:count, DIFFICULT] = difficult.float()
    return out


def unpad(target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(labels [K] long, boxes [K, 4], difficult [K] bool)`` of one padded target."""
    real = target[:, LABEL] >= 0
    rows = target[real]
    return rows[:, LABEL].long(), rows[:, BOX], rows[:, DIFFICULT] > 0


# ------------------------------------------------------------------ synthetic digits ----


class DigitCanvases(Dataset):
    """Seeded canvases of MNIST digits with their boxes (see the module docstring).

    Each digit is resized to a random square side in ``[min_size, max_size]`` pixels and
    pasted (pixel-wise maximum) where it overlaps no earlier digit's box by more than
    ``max_overlap`` IoU; its box is the tight box of its ink (pixels above 0.1).
    """

    def __init__(
        self,
        digits: Tensor,
        labels: Tensor,
        size: int,
        *,
        canvas: int = 128,
        min_digits: int = 1,
        max_digits: int = 4,
        min_size: int = 16,
        max_size: int = 48,
        max_objects: int = 8,
        max_overlap: float = 0.2,
        seed: int = 0,
    ):
        if not 0 < min_size <= max_size <= canvas:
            raise ValueError(f"digit sizes {min_size}..{max_size} must fit a {canvas} canvas")
        if not 1 <= min_digits <= max_digits <= max_objects:
            raise ValueError(
                f"digits per image {min_digits}..{max_digits} must be in 1..max_objects"
            )
        self.digits = digits  # [N, 28, 28] in [0, 1]
        self.labels = labels
        self.size = size
        self.canvas = canvas
        self.counts = (min_digits, max_digits)
        self.sizes = (min_size, max_size)
        self.max_objects = max_objects
        self.max_overlap = max_overlap
        self.seed = seed
        self._made: dict[int, tuple[Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        if index not in self._made:  # made once per process: epochs read the same sample
            self._made[index] = self._make(index)
        return self._made[index]

    def _make(self, index: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = torch.zeros(self.canvas, self.canvas)
        boxes: list[Tensor] = []
        labels: list[int] = []
        wanted = int(torch.randint(self.counts[0], self.counts[1] + 1, (), generator=gen))
        for _ in range(10 * wanted):  # placements that overlap too much are retried
            if len(boxes) == wanted:
                break
            side = int(torch.randint(self.sizes[0], self.sizes[1] + 1, (), generator=gen))
            x0, y0 = torch.randint(0, self.canvas - side + 1, (2,), generator=gen).tolist()
            pick = int(torch.randint(len(self.digits), (), generator=gen))
            digit = F.interpolate(
                self.digits[pick][None, None], size=(side, side), mode="bilinear"
            )[0, 0].clamp(0, 1)
            ink = (digit > 0.1).nonzero()
            if len(ink) == 0:
                continue
            (ty0, tx0), (ty1, tx1) = ink.min(0).values.tolist(), ink.max(0).values.tolist()
            box = torch.tensor([x0 + tx0, y0 + ty0, x0 + tx1 + 1, y0 + ty1 + 1], dtype=torch.float)
            if boxes and float(box_iou(box[None], torch.stack(boxes)).max()) > self.max_overlap:
                continue
            region = image[y0 : y0 + side, x0 : x0 + side]
            image[y0 : y0 + side, x0 : x0 + side] = torch.maximum(region, digit)
            boxes.append(box)
            labels.append(int(self.labels[pick]))
        x = ((image - MNIST_MEAN) / MNIST_STD)[None]
        target = pad_targets(
            torch.tensor(labels),
            torch.stack(boxes) if boxes else torch.zeros(0, 4),
            torch.zeros(len(labels)),
            self.max_objects,
        )
        return x, target


def mnist_detection(
    seed: int = 0,
    *,
    train_size: int = 4000,
    val_size: int = 500,
    image_size: int = 128,
    max_objects: int = 8,
) -> tuple[Dataset, Dataset, DetectionInfo]:
    """The embedded synthetic set: ``train_size`` / ``val_size`` canvases of
    ``image_size`` pixels, from MNIST-5k's seeded train / test split of digits."""
    train_digits, val_digits = load_mnist5k(seed=seed)
    sets = []
    for split, (digits, size) in enumerate(((train_digits, train_size), (val_digits, val_size))):
        images, labels = digits.tensors
        raw = (images[:, 0] * MNIST_STD + MNIST_MEAN).clamp(0, 1)  # back to [0, 1] ink
        sets.append(
            DigitCanvases(
                raw,
                labels,
                size,
                canvas=image_size,
                max_objects=max_objects,
                seed=2 * seed + split,
            )
        )
    info = DetectionInfo(10, 1, image_size, tuple(str(d) for d in range(10)), "mnist_detection")
    return sets[0], sets[1], info


# ------------------------------------------------------------------ VOC and COCO ----


class _Resized(Dataset):
    """A dataset of ``(PIL image, (labels, boxes, difficult))`` resized to ``S x S``,
    normalised, with padded targets. ``augment``: random horizontal flips."""

    def __init__(self, source: Dataset, parse, image_size: int, max_objects: int, augment: bool):

        self.source = source
        self.parse = parse
        self.max_objects = max_objects
        flips = [T.RandomHorizontalFlip()] if augment else []
        self.transform = T.Compose(
            [
                T.ToImage(),
                *flips,
                T.Resize((image_size, image_size), antialias=True),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(*_IMAGENET_STATS),
            ]
        )

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:

        image, annotation = self.source[index]
        labels, boxes, difficult = self.parse(annotation)
        size = (image.height, image.width)
        boxes = tv_tensors.BoundingBoxes(boxes.reshape(-1, 4), format="XYXY", canvas_size=size)
        image, boxes = self.transform(image, boxes)
        return image, pad_targets(labels, boxes.as_subclass(Tensor), difficult, self.max_objects)


def _voc_parse(annotation: dict) -> tuple[Tensor, Tensor, Tensor]:
    """VOC XML (as torchvision parses it) -> labels, boxes (0-based pixels), difficult."""
    objects = annotation["annotation"].get("object", [])
    if isinstance(objects, dict):  # one object: the XML parser gives no list
        objects = [objects]
    labels, boxes, difficult = [], [], []
    for obj in objects:
        box = {key: float(value) for key, value in obj["bndbox"].items()}
        # VOC boxes are 1-based and inclusive: pixel i spans [i - 1, i)
        boxes.append([box["xmin"] - 1, box["ymin"] - 1, box["xmax"], box["ymax"]])
        labels.append(VOC_CLASSES.index(obj["name"]))
        difficult.append(int(obj.get("difficult", "0")))
    labels = torch.tensor(labels, dtype=torch.long)
    return labels, torch.tensor(boxes).reshape(-1, 4), torch.tensor(difficult)


VOC_YEARS = ("2007", "2008", "2009", "2010", "2011", "2012")
VOC_SETS = ("train", "val", "trainval", "test")


def voc_image_sets(key: str, spec: str, one: bool = False) -> list[tuple[str, str]]:
    """``"2007-trainval+2012-trainval"`` -> ``[("2007", "trainval"), ("2012", "trainval")]``
    (``one``: exactly one image set, as validation takes).

    Raises:
        ValueError: a year or image set VOC does not have, naming ``key``.
    """
    sets = []
    for part in str(spec).split("+"):
        year, _, image_set = part.strip().partition("-")
        if year not in VOC_YEARS or image_set not in VOC_SETS:
            raise ValueError(
                f"{key}={spec!r}: VOC image sets are YEAR-SET joined by '+', YEAR in "
                f"{VOC_YEARS[0]}..{VOC_YEARS[-1]}, SET one of {VOC_SETS} (e.g. "
                "2007-trainval+2012-trainval)"
            )
        sets.append((year, image_set))
    if one and len(sets) != 1:
        raise ValueError(f"{key}={spec!r}: validation reads one image set, e.g. 2007-test")
    return sets


def voc(
    root: str | Path,
    *,
    train_sets: Sequence[Sequence[str]] = (("2007", "trainval"), ("2012", "trainval")),
    val_set: Sequence[str] = ("2007", "test"),
    image_size: int = 416,
    max_objects: int = 64,
    download: bool = False,
    augment: bool = True,
) -> tuple[Dataset, Dataset, DetectionInfo]:
    """PASCAL VOC through ``torchvision.datasets.VOCDetection``; the usual split is
    07+12 trainval for training and 07 test for validation.

    Raises:
        DatasetNotFoundError: a year / image set missing under ``root``.
    """

    root = Path(root)

    def load(year: str, image_set: str, train: bool) -> Dataset:
        try:
            source = VOCDetection(str(root), str(year), image_set, download=download)
        except (RuntimeError, OSError, ValueError) as err:
            raise DatasetNotFoundError(
                f"PASCAL VOC {year} {image_set} not found under {root.resolve()}: expected "
                f"{root.resolve() / 'VOCdevkit' / f'VOC{year}'}/ with Annotations/, "
                f"JPEGImages/ and ImageSets/Main/{image_set}.txt, as extracted from the "
                f"official VOC{year} archives ({err}). Set data.root, or data.download=true "
                "on a machine with internet."
            ) from err
        return _Resized(source, _voc_parse, image_size, max_objects, augment and train)

    train = ConcatDataset([load(year, split, True) for year, split in train_sets])
    val = load(val_set[0], val_set[1], False)
    return train, val, DetectionInfo(len(VOC_CLASSES), 3, image_size, VOC_CLASSES, "voc")


class _CocoParse:
    """COCO annotations -> contiguous labels (the file's categories in id order), XYXY
    boxes, crowd flags."""

    def __init__(self, categories: Sequence[int]):
        self.index = {cat: i for i, cat in enumerate(categories)}

    def __call__(self, annotations: list[dict]) -> tuple[Tensor, Tensor, Tensor]:
        kept = [a for a in annotations if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = torch.tensor([a["bbox"] for a in kept], dtype=torch.float).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) -> (x1, y1, x2, y2)
        labels = torch.tensor([self.index[a["category_id"]] for a in kept], dtype=torch.long)
        crowd = torch.tensor([int(a.get("iscrowd", 0)) for a in kept])
        return labels, boxes, crowd


def coco(
    root: str | Path,
    *,
    train_split: str = "train2017",
    val_split: str = "val2017",
    image_size: int = 416,
    max_objects: int = 128,
    augment: bool = True,
) -> tuple[Dataset, Dataset, DetectionInfo]:
    """COCO through ``torchvision.datasets.CocoDetection`` (needs ``pycocotools``).

    Raises:
        DatasetNotFoundError: an image folder or annotation file missing under ``root``.
    """

    root = Path(root)
    sets, names = [], None
    for split, train in ((train_split, True), (val_split, False)):
        images, annotations = root / split, root / "annotations" / f"instances_{split}.json"
        if not images.is_dir() or not annotations.is_file():
            raise DatasetNotFoundError(
                f"COCO {split} not found: expected {images.resolve()}/ (the images) and "
                f"{annotations.resolve()} (from annotations_trainval2017.zip of "
                "cocodataset.org). Set data.root to the folder holding both."
            )
        try:
            source = CocoDetection(str(images), str(annotations))
        except (ValueError, KeyError, OSError) as err:  # json.JSONDecodeError is a ValueError
            raise DatasetNotFoundError(
                f"COCO annotations {annotations} cannot be read: {err}"
            ) from err
        categories = sorted(source.coco.cats)
        split_names = tuple(source.coco.cats[c]["name"] for c in categories)
        if names is not None and split_names != names:
            raise DatasetNotFoundError(
                f"COCO {split} has other categories than {train_split}; their labels would "
                "not match"
            )
        names = split_names
        parse = _CocoParse(categories)
        sets.append(_Resized(source, parse, image_size, max_objects, augment and train))
    return sets[0], sets[1], DetectionInfo(len(names), 3, image_size, names, "coco")


def build_detection(
    name: str,
    root: str | Path = "data",
    download: bool = False,
    augment: bool = True,
    seed: int = 0,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    image_size: int | None = None,
    max_objects: int | None = None,
    train_split: str | None = None,
    val_split: str | None = None,
) -> tuple[Dataset, Dataset, DetectionInfo]:
    """``(train, val, info)`` of detection set ``name`` (what
    :func:`spikezip.data.build_datasets` returns for it). ``mnist_detection`` generates
    ``train_size`` / ``val_size`` canvases (4,000 / 500 by default); VOC and COCO are cut
    to seeded random subsets of those sizes, if given, and read the image sets
    ``train_split`` / ``val_split`` (:func:`voc_image_sets`; COCO: folder names)."""
    size, objects = DEFAULTS[name]
    image_size, max_objects = image_size or size, max_objects or objects
    if name == "mnist_detection":
        return mnist_detection(
            seed,
            train_size=train_size or 4000,
            val_size=val_size or 500,
            image_size=image_size,
            max_objects=max_objects,
        )
    if name == "voc":
        splits = {}
        if train_split:
            splits["train_sets"] = voc_image_sets("train_split", train_split)
        if val_split:
            (splits["val_set"],) = voc_image_sets("val_split", val_split, one=True)
        train, val, info = voc(
            root,
            image_size=image_size,
            max_objects=max_objects,
            download=download,
            augment=augment,
            **splits,
        )
    else:
        splits = {"train_split": train_split, "val_split": val_split}
        splits = {k: v for k, v in splits.items() if v}
        train, val, info = coco(
            root, image_size=image_size, max_objects=max_objects, augment=augment, **splits
        )
    return subset(train, train_size, seed), subset(val, val_size, seed), info
