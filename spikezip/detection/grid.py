"""Where each output row of a YOLO detector looks, and how its raw numbers become boxes.

A detector's output ``[B, N, 5 + C]`` holds one row per anchor of every grid cell of every
scale (layout in :mod:`spikezip.models.yolo`). :class:`Grid` gives every row its cell,
stride and anchor; :meth:`Grid.decode` applies YOLOv3's box parametrisation

    ``x = (sigmoid(tx) + cx) * stride``, ``w = anchor_w * exp(tw)`` (y, h likewise),
    ``score(class k) = sigmoid(objectness) * sigmoid(class logit k)``,

and :func:`postprocess` keeps the confident candidates and suppresses duplicates with
``torchvision.ops.batched_nms`` (per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

# Column of each raw number in a row.
XY, WH, OBJ, CLS = slice(0, 2), slice(2, 4), 4, slice(5, None)
# exp(tw) beyond this is no box at all; clamping keeps a wild early-T SNN output finite.
_MAX_LOG_SCALE = 12.0


@dataclass(frozen=True)
class Detections:
    """One image's detections: ``boxes [K, 4]`` (x1, y1, x2, y2 in pixels), ``scores [K]``,
    ``labels [K]`` (long), best score first."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}


class Grid:
    """Per output row: cell ``(cx, cy)``, stride and anchor ``(w, h)``, for heads
    ``[(stride, anchors), ...]`` in the order of the network's output rows.

    ``image_size`` is the (square) input side; each head's grid is ``image_size / stride``.
    """

    def __init__(self, heads: Sequence, image_size: int):
        cells, strides, anchors, head_of, anchor_of = [], [], [], [], []
        self.offsets: list[int] = []
        start = 0
        for h, head in enumerate(heads):
            if image_size % head.stride:
                raise ValueError(
                    f"image size {image_size} is not a multiple of the detector's stride "
                    f"{head.stride}"
                )
            side = image_size // head.stride
            ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
            cell = torch.stack([xs.flatten(), ys.flatten()], 1).float()  # [side*side, 2]
            for a, anchor in enumerate(head.anchors):
                cells.append(cell)
                strides.append(torch.full((side * side,), float(head.stride)))
                anchors.append(torch.tensor(anchor, dtype=torch.float).expand(side * side, 2))
                head_of.append(torch.full((side * side,), h))
                anchor_of.append(torch.full((side * side,), a))
            self.offsets.append(start)
            start += len(head.anchors) * side * side
        self.heads = tuple(heads)
        self.image_size = image_size
        self.cells = torch.cat(cells)  # [N, 2]
        self.strides = torch.cat(strides)  # [N]
        self.anchors = torch.cat(anchors)  # [N, 2]
        self.head_of = torch.cat(head_of)  # [N]
        self.anchor_of = torch.cat(anchor_of)  # [N]

    @property
    def rows(self) -> int:
        return len(self.strides)

    def side(self, head: int) -> int:
        return self.image_size // self.heads[head].stride

    def row(self, head: int, anchor: int, cx: Tensor, cy: Tensor) -> Tensor:
        """Output row of ``anchor`` of ``head`` at cells ``(cx, cy)`` (long tensors)."""
        side = self.side(head)
        return self.offsets[head] + anchor * side * side + cy * side + cx

    def check(self, outputs: Tensor) -> None:
        if outputs.shape[-2] != self.rows:
            raise ValueError(
                f"the detector's output has {outputs.shape[-2]} rows, but its heads at input "
                f"size {self.image_size} have {self.rows}: is data.image_size the size it "
                "was built for?"
            )

    def boxes(self, outputs: Tensor) -> Tensor:
        """``[..., N, 4]`` boxes (x1, y1, x2, y2) in pixels from raw ``[..., N, 5 + C]``."""
        self.check(outputs)
        dev = outputs.device
        cells, strides = self.cells.to(dev), self.strides.to(dev)[:, None]
        center = (outputs[..., XY].sigmoid() + cells) * strides
        size = self.anchors.to(dev) * outputs[..., WH].clamp(max=_MAX_LOG_SCALE).exp()
        return torch.cat([center - size / 2, center + size / 2], -1)

    def scores(self, outputs: Tensor) -> Tensor:
        """``[..., N, C]`` class-specific confidences in ``[0, 1]``."""
        return outputs[..., OBJ : OBJ + 1].sigmoid() * outputs[..., CLS].sigmoid()


def postprocess(
    grid: Grid,
    outputs: Tensor,
    *,
    score_threshold: float = 0.005,
    iou_threshold: float = 0.45,
    max_candidates: int = 2000,
    max_detections: int = 100,
) -> list[Detections]:
    """Detections of each image of raw ``outputs [B, N, 5 + C]``: every (row, class)
    scoring above ``score_threshold`` (the best ``max_candidates``), boxes clipped to the
    image, class-wise NMS at ``iou_threshold``, the best ``max_detections`` kept."""
    boxes = grid.boxes(outputs).clamp(0, grid.image_size)
    scores = grid.scores(outputs)
    classes = scores.shape[-1]
    result = []
    for b in range(outputs.shape[0]):
        flat = scores[b].flatten()
        keep = (flat > score_threshold).nonzero().squeeze(1)
        if len(keep) > max_candidates:
            keep = keep[flat[keep].topk(max_candidates).indices]
        rows, labels = keep // classes, keep % classes
        cand_boxes, cand_scores = boxes[b, rows], flat[keep]
        kept = batched_nms(cand_boxes, cand_scores, labels, iou_threshold)
        kept = kept[:max_detections]  # batched_nms sorts by score
        result.append(Detections(cand_boxes[kept], cand_scores[kept], labels[kept]))
    return result
