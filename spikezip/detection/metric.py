"""Mean average precision of a detector's raw outputs (torchmetrics, COCO's definition)."""

from __future__ import annotations

from torch import Tensor

from spikezip.data.detection import unpad
from spikezip.detection.grid import Detections, Grid, postprocess


def target_dicts(targets: Tensor) -> list[dict[str, Tensor]]:
    """torchmetrics' targets from padded ``[B, M, 6]`` rows; difficult objects become
    crowds, which COCO's matching ignores (neither found nor missed), as VOC ignores them."""
    out = []
    for target in targets:
        labels, boxes, difficult = unpad(target)
        out.append({"boxes": boxes, "labels": labels, "iscrowd": difficult.long()})
    return out


class DetectionMAP:
    """mAP@0.5 and mAP@[0.5:0.95] of raw detector outputs, accumulated over batches.

    Wraps ``torchmetrics.detection.MeanAveragePrecision`` (pycocotools backend): its
    states are the detections and targets themselves, gathered across processes by
    torchmetrics when a process group is running.
    """

    def __init__(self, grid: Grid, **postprocess_args):
        from torchmetrics.detection import MeanAveragePrecision

        self.grid = grid
        self.postprocess_args = postprocess_args
        self.metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")

    def detections(self, outputs: Tensor) -> list[Detections]:
        return postprocess(self.grid, outputs, **self.postprocess_args)

    def update(self, outputs: Tensor, targets: Tensor) -> list[Detections]:
        """Add a batch of raw ``outputs [B, N, 5 + C]``; returns its detections."""
        found = self.detections(outputs.float())
        self.metric.update([d.as_dict() for d in found], target_dicts(targets))
        return found

    def compute(self) -> dict[str, float]:
        """``{"map50": ..., "map": ...}`` in [0, 1] (``-1`` when there was no object)."""
        values = self.metric.compute()
        return {"map50": float(values["map_50"]), "map": float(values["map"])}

    def reset(self) -> None:
        self.metric.reset()
