"""ResNets with optional residual connection re-routing (RCR, paper §3.3).

Parameter names follow torchvision (``conv1``, ``bn1``, ``layerK.i.conv1``, ...,
``downsample.0/1``, ``fc``) so its ImageNet weights load. Each activation call site has
its own module (``relu1``, ``relu2``): torchvision's BasicBlock calls one ``self.relu``
twice, which a stateful spiking neuron cannot share.
"""

from __future__ import annotations

from torch import Tensor, nn

from spikezip.models.pretrained import load_torchvision_weights
from spikezip.models.widths import scaled


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut.

    Standard: ``relu2(bn2(conv2(relu1(bn1(conv1 x)))) + shortcut(x))``.
    RCR: ``relu2(bn2(conv2(relu1(bn1(conv1 x))))) + shortcut(x)``: the add moves after the
    block's neuron, and a conv shortcut gets its own activation
    (``downsample = [conv, BN, ReLU]``), so no neuron waits on the sum.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, rcr: bool = False):
        super().__init__()
        self.rcr = rcr
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.downsample: nn.Module | None = None
        # The identity shortcut as a module of its own: integer weights (pet.weight_bits)
        # put it on their grid; it holds no parameters (checkpoints are unchanged).
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            layers = [nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)]
            self.downsample = nn.Sequential(*layers, *([nn.ReLU()] if rcr else []))

    def forward(self, x: Tensor) -> Tensor:
        identity = self.shortcut(x) if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.rcr:
            return self.relu2(out) + identity
        return self.relu2(out + identity)


class ResNet(nn.Module):
    """ResNet of BasicBlocks. ``stem="imagenet"``: 7x7/2 conv + 3x3/2 max-pool, four stages
    (64..512). ``stem="cifar"``: 3x3 conv, three stages (16, 32, 64), for 32x32 input.
    Input ``[B, C, H, W]``, output ``[B, num_classes]``."""

    def __init__(
        self,
        blocks: list[int],
        num_classes: int = 1000,
        stem: str = "imagenet",
        rcr: bool = False,
        width: float = 1.0,
        in_channels: int = 3,
    ):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"ResNet stem must be 'imagenet' or 'cifar', got {stem!r}")
        base = [64, 128, 256, 512] if stem == "imagenet" else [16, 32, 64]
        if len(blocks) != len(base):
            raise ValueError(f"a {stem} ResNet has {len(base)} stages, got blocks={blocks}")
        planes = [scaled(p, width) for p in base]
        self.rcr = rcr
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, planes[0], 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        in_planes = planes[0]
        for i, (p, n) in enumerate(zip(planes, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layer = []
            for j in range(n):
                layer.append(BasicBlock(in_planes, p, stride if j == 0 else 1, rcr))
                in_planes = p
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet20(
    num_classes: int = 10, rcr: bool = False, width: float = 1.0, in_channels: int = 3
) -> ResNet:
    """CIFAR ResNet-20 (He et al. 2016, 3x3 blocks of 16/32/64 channels, conv shortcuts)."""
    return ResNet([3, 3, 3], num_classes, "cifar", rcr, width, in_channels)


def _imagenet_resnet(name: str, blocks: list[int]):
    def build(
        num_classes: int = 1000,
        rcr: bool = False,
        width: float = 1.0,
        in_channels: int = 3,
        pretrained: bool = False,
    ) -> ResNet:
        model = ResNet(blocks, num_classes, "imagenet", rcr, width, in_channels)
        return load_torchvision_weights(model, name) if pretrained else model

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"ImageNet {name}; ``pretrained=True`` loads torchvision's weights."
    return build


resnet18 = _imagenet_resnet("resnet18", [2, 2, 2, 2])
resnet34 = _imagenet_resnet("resnet34", [3, 4, 6, 3])
