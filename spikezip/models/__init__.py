"""Plain ``nn.Module`` ANNs whose parameter names match torchvision, so its weights load;
:mod:`spikezip.models.registry` lists them by name."""

from spikezip.models.registry import (
    MODELS,
    architecture,
    build_model,
    model_entry,
    named,
    task_of,
)
from spikezip.models.resnet import resnet18, resnet20, resnet34
from spikezip.models.small import small_cnn
from spikezip.models.vgg import vgg16
from spikezip.models.vit import vit
from spikezip.models.yolo import yolov3, yolov3_tiny
from spikezip.models.zoo import check_classifier, check_timm

__all__ = [
    "MODELS",
    "architecture",
    "build_model",
    "check_classifier",
    "check_timm",
    "model_entry",
    "named",
    "resnet18",
    "resnet20",
    "resnet34",
    "small_cnn",
    "task_of",
    "vgg16",
    "vit",
    "yolov3",
    "yolov3_tiny",
]
