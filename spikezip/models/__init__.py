"""Plain ``nn.Module`` ANNs whose parameter names match torchvision, so its weights load."""

from torch import nn

from spikezip.models.pretrained import load_torchvision_weights
from spikezip.models.resnet import BasicBlock, ResNet, resnet18, resnet20, resnet34
from spikezip.models.small import SmallCNN, small_cnn
from spikezip.models.vgg import VGG, vgg16
from spikezip.models.yolo import YOLOv3, YOLOv3Tiny, yolov3, yolov3_tiny

# Builders by the names configs use (``model=vgg16``); each takes ``num_classes``.
MODELS = {
    "small": small_cnn,
    "vgg16": vgg16,
    "resnet20": resnet20,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "yolov3": yolov3,
    "yolov3_tiny": yolov3_tiny,
}

# Detectors (task=detection): their builders also take ``anchors``; the others classify.
DETECTORS = ("yolov3", "yolov3_tiny")


# Models with residual connections to re-route (``rcr=True``).
RESNETS = ("resnet20", "resnet18", "resnet34")
# Models whose torchvision ImageNet weights load (``pretrained=True``).
PRETRAINED = ("resnet18", "resnet34", "vgg16")


def build_model(name: str, library: str = "spikezip", **kwargs) -> nn.Module:
    """The ANN called ``name`` in :data:`MODELS` (``library="torchvision"``: torchvision's
    classifier of that name, :mod:`spikezip.models.zoo`), built with ``kwargs``."""
    if library == "torchvision":
        from spikezip.models.zoo import torchvision_classifier

        return torchvision_classifier(name, **kwargs)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = [
    "DETECTORS",
    "MODELS",
    "PRETRAINED",
    "RESNETS",
    "build_model",
    "VGG",
    "YOLOv3",
    "YOLOv3Tiny",
    "BasicBlock",
    "ResNet",
    "SmallCNN",
    "load_torchvision_weights",
    "resnet18",
    "resnet20",
    "resnet34",
    "small_cnn",
    "vgg16",
    "yolov3",
    "yolov3_tiny",
]
