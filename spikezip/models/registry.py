"""Every model by the name configs use (``model=resnet20``), registered once with its
facts: the task it solves, whether it has residual connections to re-route, whether
torchvision's ImageNet weights load into it, and what it needs to know of its data.
The model modules below know nothing of this list; a new model is one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from spikezip.models.resnet import resnet18, resnet20, resnet34
from spikezip.models.small import small_cnn
from spikezip.models.vgg import vgg16
from spikezip.models.vit import vit
from spikezip.models.yolo import anchors_for, yolov3, yolov3_tiny
from spikezip.models.zoo import SHAPE_TRACED, timm_model, torchvision_classifier

# What a model is told of its data beyond classes and channels: ``inputs(info, rcr=,
# variant=)`` gives the extra keywords of its builder. ``info`` has ``image_size`` (and a
# detection set's ``name``, which picks its anchors).
Inputs = Callable[..., dict]


def _nothing(info, **_) -> dict:
    return {}


def _image_size(info, **_) -> dict:
    return {"image_size": info.image_size}


def _re_routing(info, *, rcr: bool = False, **_) -> dict:
    return {"rcr": bool(rcr)}


def _vgg_variant(info, *, variant: str | None = None, **_) -> dict:
    return {"variant": variant or ("cifar" if info.image_size <= 64 else "imagenet")}


def _anchors(name: str) -> Inputs:
    def inputs(info, **_) -> dict:
        anchors = anchors_for(name, info.name)
        # plain lists: JSON and checkpoints
        return {"anchors": [list(a) for a in anchors], "image_size": info.image_size}

    return inputs


@dataclass(frozen=True)
class ModelEntry:
    """One model: its builder (``num_classes``, ``in_channels``, ``width`` and what
    :attr:`inputs` adds), its task, whether ``rcr`` applies (``residual``) and where
    pretrained weights come from (``pretrained="torchvision"``, or None)."""

    build: Callable[..., nn.Module]
    task: str = "classification"
    residual: bool = False
    pretrained: str | None = None
    inputs: Inputs = field(default=_nothing)


MODELS = {
    "small": ModelEntry(small_cnn, inputs=_image_size),
    "vgg16": ModelEntry(vgg16, pretrained="torchvision", inputs=_vgg_variant),
    "resnet20": ModelEntry(resnet20, residual=True, inputs=_re_routing),
    "resnet18": ModelEntry(resnet18, residual=True, pretrained="torchvision", inputs=_re_routing),
    "resnet34": ModelEntry(resnet34, residual=True, pretrained="torchvision", inputs=_re_routing),
    "vit": ModelEntry(vit, inputs=_image_size),
    "yolov3": ModelEntry(yolov3, task="detection", inputs=_anchors("yolov3")),
    "yolov3_tiny": ModelEntry(yolov3_tiny, task="detection", inputs=_anchors("yolov3_tiny")),
}


def named(**facts) -> list[str]:
    """The models whose entries have these facts, e.g. ``named(residual=True)``."""
    return [n for n, e in MODELS.items() if all(getattr(e, k) == v for k, v in facts.items())]


def model_entry(name: str) -> ModelEntry:
    """The entry of model ``name``.

    Raises:
        ValueError: an unknown name, with the known ones.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]


def task_of(arch: dict) -> str:
    """The task of the network ``arch`` builds (torchvision's are classifiers)."""
    if arch.get("library", "spikezip") in ("torchvision", "timm"):
        return "classification"
    return model_entry(arch["name"]).task


def build_model(name: str, library: str = "spikezip", **kwargs) -> nn.Module:
    """The ANN called ``name`` in :data:`MODELS` (``library="torchvision"``: torchvision's
    classifier of that name, :mod:`spikezip.models.zoo`), built with ``kwargs``."""
    if library == "torchvision":
        return torchvision_classifier(name, **kwargs)
    if library == "timm":
        return timm_model(name, **kwargs)
    return model_entry(name).build(**kwargs)


def architecture(
    name: str,
    info,
    *,
    library: str = "spikezip",
    width: float = 1.0,
    rcr: bool = False,
    variant: str | None = None,
) -> dict:
    """Keyword arguments of :func:`build_model` for model ``name`` on data described by
    ``info`` (``num_classes``, ``in_channels``, ``image_size``); a detector's also hold
    its anchors and input size, which its output layout depends on."""
    arch: dict = {"name": name, "num_classes": info.num_classes}
    arch["in_channels"] = info.in_channels
    arch["width"] = float(width)
    if library in ("torchvision", "timm"):
        arch["library"] = library
        if library == "timm" or name.startswith(("vit_", *SHAPE_TRACED)):  # size-bound
            arch["image_size"] = info.image_size
        return arch
    return {**arch, **model_entry(name).inputs(info, rcr=rcr, variant=variant)}
