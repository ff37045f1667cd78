"""YOLOv3 and YOLOv3-tiny detectors with ReLU activations (paper §4.6).

The paper replaces YOLOv3's LeakyReLU by ReLU so that every activation becomes a
Q-ReLU and then a spiking neuron; these definitions do so from the start. Everything
after the last neuron of each head is linear (a 1x1 conv, reshapes, one concatenation),
so the network's single output converts exactly and the non-linear decoding (sigmoid,
exp, anchors, NMS) happens outside it, in :mod:`spikezip.detection`.

Output ``[B, N, 5 + C]``: one row per anchor of every grid cell of every scale, in the
order of :attr:`YOLO.heads` (coarsest stride first), each scale's rows ordered
``(anchor, y, x)``; a row holds the raw ``(tx, ty, tw, th, objectness, class logits)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikezip.models.widths import scaled

# Anchor boxes (width, height) in pixels of the input image, three per scale, finest
# scale first: the ones YOLOv3 and YOLOv3-tiny were published with (COCO, 416x416 input;
# also what is used for VOC).
ANCHORS = {
    "yolov3": (
        (10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198),
        (373, 326),
    ),
    "yolov3_tiny": ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)),
}  # fmt: skip
# A dataset's own anchors, by (model, dataset): for the synthetic digits, IoU k-means
# (medians) over the 3,722 boxes of its first 1,500 training canvases at 128x128.
DATASET_ANCHORS = {
    ("yolov3_tiny", "mnist_detection"): (
        (10, 14), (16, 16), (13, 20), (18, 23), (23, 28), (30, 32),
    ),
    ("yolov3", "mnist_detection"): (
        (10, 14), (14, 15), (12, 20), (20, 16), (18, 20), (17, 25), (22, 28), (28, 27),
        (29, 33),
    ),
}  # fmt: skip


def anchors_for(model: str, dataset: str) -> tuple[tuple[float, float], ...]:
    """The anchors ``model`` uses on ``dataset``: the dataset's own if it has them, else
    the published ones."""
    return DATASET_ANCHORS.get((model, dataset), ANCHORS[model])


@dataclass(frozen=True)
class Head:
    """One detection scale: its stride in pixels and its anchors ``(w, h)`` in pixels."""

    stride: int
    anchors: tuple[tuple[float, float], ...]


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Darknet's basic layer, ReLU in place of LeakyReLU: conv (no bias), BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class DarknetResidual(nn.Module):
    """``x + conv3x3(conv1x1(x))`` (Darknet-53's block; the add follows the neurons)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_bn_relu(channels, max(1, channels // 2), 1)
        self.conv2 = conv_bn_relu(self.conv1[0].out_channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.conv1(x))


class Darknet53(nn.Module):
    """Darknet-53: a 3x3 stem and five stages (a stride-2 conv, then 1, 2, 8, 8, 4
    residual blocks). Returns the features at strides 8, 16 and 32."""

    BLOCKS = (1, 2, 8, 8, 4)

    def __init__(self, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        c = [scaled(n, width) for n in (32, 64, 128, 256, 512, 1024)]
        self.stem = conv_bn_relu(in_channels, c[0], 3)
        stages = []
        for i, blocks in enumerate(self.BLOCKS):
            layers = [conv_bn_relu(c[i], c[i + 1], 3, 2)]
            layers += [DarknetResidual(c[i + 1]) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.channels = (c[3], c[4], c[5])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[2], features[3], features[4]


def _head_set(cin: int, mid: int) -> nn.Sequential:
    """YOLOv3's five alternating 1x1 / 3x3 layers before each output."""
    return nn.Sequential(
        conv_bn_relu(cin, mid, 1),
        conv_bn_relu(mid, mid * 2, 3),
        conv_bn_relu(mid * 2, mid, 1),
        conv_bn_relu(mid, mid * 2, 3),
        conv_bn_relu(mid * 2, mid, 1),
    )


class YOLO(nn.Module):
    """Base of the detectors: the output layout and its flattening. ``image_size``: the
    input side the detector is trained at, which its output rows depend on
    (:class:`spikezip.detection.grid.Grid` decodes them)."""

    def __init__(self, name: str, num_classes: int, anchors, image_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.image_size = image_size
        self.heads = heads_of(name, anchors)

    def _flatten(self, outputs: Sequence[Tensor]) -> Tensor:
        """``[B, A*(5+C), H, W]`` per scale -> ``[B, sum(A*H*W), 5+C]`` (linear)."""
        rows = []
        for p, head in zip(outputs, self.heads, strict=True):
            p = p.flatten(2).unflatten(1, (len(head.anchors), 5 + self.num_classes))
            rows.append(p.transpose(2, 3).flatten(1, 2))  # [B, A*H*W, 5+C], (anchor, y, x)
        return torch.cat(rows, 1)


def _grouped(anchors: Sequence[Sequence[float]], strides: Sequence[int]) -> tuple[Head, ...]:
    """Heads, coarsest stride first, from anchors listed finest scale first."""
    anchors = [tuple(float(v) for v in a) for a in anchors]
    per = len(anchors) // len(strides)
    if per * len(strides) != len(anchors) or per == 0:
        raise ValueError(
            f"{len(anchors)} anchors cannot be split evenly over {len(strides)} scales"
        )
    groups = [tuple(anchors[i * per : (i + 1) * per]) for i in range(len(strides))]
    return tuple(Head(s, g) for s, g in sorted(zip(strides, groups, strict=True), reverse=True))


class YOLOv3(YOLO):
    """YOLOv3 (Darknet-53 backbone, detection at strides 32, 16 and 8) with ReLU.

    Input ``[B, C, H, W]`` with H and W multiples of 32; output ``[B, N, 5 + C]`` (module
    docstring). ``anchors``: nine ``(w, h)`` in pixels, finest scale first.
    """

    def __init__(
        self,
        num_classes: int = 80,
        anchors: Sequence[Sequence[float]] = ANCHORS["yolov3"],
        in_channels: int = 3,
        width: float = 1.0,
        image_size: int = 416,
    ):
        super().__init__("yolov3", num_classes, anchors, image_size)
        self.backbone = Darknet53(in_channels, width)
        c8, c16, c32 = self.backbone.channels
        m = [scaled(n, width) for n in (512, 256, 128)]
        outs = [len(h.anchors) * (5 + num_classes) for h in self.heads]
        self.set32 = _head_set(c32, m[0])
        self.out32 = nn.Sequential(conv_bn_relu(m[0], m[0] * 2, 3), nn.Conv2d(m[0] * 2, outs[0], 1))
        self.route16 = conv_bn_relu(m[0], m[1], 1)
        self.up16 = nn.Upsample(scale_factor=2, mode="nearest")
        self.set16 = _head_set(m[1] + c16, m[1])
        self.out16 = nn.Sequential(conv_bn_relu(m[1], m[1] * 2, 3), nn.Conv2d(m[1] * 2, outs[1], 1))
        self.route8 = conv_bn_relu(m[1], m[2], 1)
        self.up8 = nn.Upsample(scale_factor=2, mode="nearest")
        self.set8 = _head_set(m[2] + c8, m[2])
        self.out8 = nn.Sequential(conv_bn_relu(m[2], m[2] * 2, 3), nn.Conv2d(m[2] * 2, outs[2], 1))

    def forward(self, x: Tensor) -> Tensor:
        f8, f16, f32 = self.backbone(x)
        y32 = self.set32(f32)
        y16 = self.set16(torch.cat([self.up16(self.route16(y32)), f16], 1))
        y8 = self.set8(torch.cat([self.up8(self.route8(y16)), f8], 1))
        return self._flatten([self.out32(y32), self.out16(y16), self.out8(y8)])


class YOLOv3Tiny(YOLO):
    """YOLOv3-tiny with ReLU: six 3x3 convs with 2x2 max-pools (to stride 32), detection
    at strides 32 and 16. The original's stride-1 max-pool after the sixth conv (a
    zero-padding trick of Darknet) is left out. Max-pools become average-pools when the
    network is morphed into a QANN (paper §3.1), as in every other model here.
    """

    def __init__(
        self,
        num_classes: int = 80,
        anchors: Sequence[Sequence[float]] = ANCHORS["yolov3_tiny"],
        in_channels: int = 3,
        width: float = 1.0,
        image_size: int = 416,
    ):
        super().__init__("yolov3_tiny", num_classes, anchors, image_size)
        c = [scaled(n, width) for n in (16, 32, 64, 128, 256, 512, 1024)]
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(5):
            layers += [conv_bn_relu(cin, c[i], 3), nn.MaxPool2d(2, 2)]
            cin = c[i]
        self.features16 = nn.Sequential(*layers[:-1])  # through the fifth conv: stride 16
        self.pool = layers[-1]
        self.features32 = nn.Sequential(conv_bn_relu(c[4], c[5], 3), conv_bn_relu(c[5], c[6], 3))
        mid = scaled(256, width)
        outs = [len(h.anchors) * (5 + num_classes) for h in self.heads]
        self.neck32 = conv_bn_relu(c[6], mid, 1)
        self.out32 = nn.Sequential(conv_bn_relu(mid, c[5], 3), nn.Conv2d(c[5], outs[0], 1))
        self.route16 = conv_bn_relu(mid, scaled(128, width), 1)
        self.up16 = nn.Upsample(scale_factor=2, mode="nearest")
        self.out16 = nn.Sequential(
            conv_bn_relu(scaled(128, width) + c[4], c[4], 3), nn.Conv2d(c[4], outs[1], 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        f16 = self.features16(x)
        y32 = self.neck32(self.features32(self.pool(f16)))
        y16 = torch.cat([self.up16(self.route16(y32)), f16], 1)
        return self._flatten([self.out32(y32), self.out16(y16)])


def yolov3(num_classes=80, anchors=None, in_channels=3, width=1.0, image_size=416) -> YOLOv3:
    """YOLOv3 with the published anchors unless ``anchors`` are given."""
    return YOLOv3(num_classes, anchors or ANCHORS["yolov3"], in_channels, width, image_size)


def yolov3_tiny(
    num_classes=80, anchors=None, in_channels=3, width=1.0, image_size=416
) -> YOLOv3Tiny:
    """YOLOv3-tiny with the published anchors unless ``anchors`` are given."""
    anchors = anchors or ANCHORS["yolov3_tiny"]
    return YOLOv3Tiny(num_classes, anchors, in_channels, width, image_size)


# Strides of each detector's heads, finest first (the order anchors are listed in).
STRIDES = {"yolov3": (8, 16, 32), "yolov3_tiny": (16, 32)}


def heads_of(name: str, anchors: Sequence[Sequence[float]] | None = None) -> tuple[Head, ...]:
    """The heads of detector ``name`` with ``anchors`` (its default ones if None), in the
    order of its output rows; what decoding needs, without building the network."""
    return _grouped(anchors or ANCHORS[name], STRIDES[name])
