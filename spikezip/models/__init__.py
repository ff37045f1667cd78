"""Plain ``nn.Module`` ANNs whose parameter names match torchvision, so its weights load."""

from spikezip.models.pretrained import load_torchvision_weights
from spikezip.models.resnet import BasicBlock, ResNet, resnet18, resnet20, resnet34
from spikezip.models.small import SmallCNN, small_cnn
from spikezip.models.vgg import VGG, vgg16

__all__ = [
    "VGG",
    "BasicBlock",
    "ResNet",
    "SmallCNN",
    "load_torchvision_weights",
    "resnet18",
    "resnet20",
    "resnet34",
    "small_cnn",
    "vgg16",
]
