"""The closed sets of options a config takes: a value outside one fails at composition."""

from __future__ import annotations

import torch

from spikezip.data import DATASETS
from spikezip.models import MODELS
from spikezip.settings import Choice

# Closed sets taken from the registries, so a new dataset or model is one entry there.
DatasetName = Choice("DatasetName", {name: name for name in DATASETS})
ModelName = Choice("ModelName", {name: name for name in MODELS})


class Library(Choice):
    spikezip = "spikezip"  # this package's models (torchvision's parameter names)
    torchvision = "torchvision"  # any torchvision classifier, as torchvision defines it
    timm = "timm"  # any timm model, as timm defines it (the model zoo)


class TaskName(Choice):
    classification = "classification"  # class scores, accuracy
    detection = "detection"  # YOLO boxes, mAP (data: mnist_detection, voc, coco)


class VGGVariant(Choice):
    imagenet = "imagenet"  # 224x224 input, 7x7 pooled features, 4096-wide classifier
    cifar = "cifar"  # 32x32 input, 1x1 pooled features, 512-wide classifier


class TeacherSource(Choice):
    scratch = "scratch"  # trained here, on labels
    checkpoint = "checkpoint"  # teacher.checkpoint=PATH
    pretrained = "pretrained"  # torchvision's ImageNet weights


class WandbMode(Choice):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class DType(Choice):
    float32 = "float32"
    float64 = "float64"  # bit-exact comparison with the QANN

    @property
    def torch(self) -> torch.dtype:
        return getattr(torch, self.value)
