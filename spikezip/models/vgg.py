"""VGG-16 with batch-norm, laid out like torchvision's vgg16_bn (features, avgpool, classifier)."""

from __future__ import annotations

from torch import Tensor, nn

from spikezip.models.pretrained import load_torchvision_weights
from spikezip.models.widths import scaled

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """VGG with batch-norm. ``variant="imagenet"``: 224x224 input, 7x7 pooled features and
    4096-wide classifier (torchvision layout). ``variant="cifar"``: 32x32 input, 1x1 pooled
    features and a 512-wide classifier. Input ``[B, C, H, W]``, output ``[B, num_classes]``."""

    def __init__(
        self,
        cfg: list,
        num_classes: int = 1000,
        variant: str = "imagenet",
        width: float = 1.0,
        in_channels: int = 3,
        dropout: float = 0.5,
    ):
        super().__init__()
        if variant not in ("imagenet", "cifar"):
            raise ValueError(f"VGG variant must be 'imagenet' or 'cifar', got {variant!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = scaled(v, width)
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        pooled = 7 if variant == "imagenet" else 1
        hidden = scaled(4096 if variant == "imagenet" else 512, width)
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = nn.Sequential(
            nn.Linear(channels * pooled * pooled, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def vgg16(
    num_classes: int = 1000,
    variant: str = "imagenet",
    width: float = 1.0,
    in_channels: int = 3,
    pretrained: bool = False,
) -> VGG:
    """VGG-16-BN. ``pretrained=True`` loads torchvision's ImageNet ``vgg16_bn`` weights."""
    model = VGG(_VGG16, num_classes, variant, width, in_channels)
    if pretrained:
        load_torchvision_weights(model, "vgg16_bn")
    return model
