"""Mean average precision of a detector's raw outputs (torchmetrics, COCO's definition,
pycocotools backend)."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from spikezip.data.detection import unpad
from spikezip.detection.grid import Detections, Grid, postprocess


def target_dicts(targets: Tensor) -> list[dict[str, Tensor]]:
    """torchmetrics' targets from padded ``[B, M, 6]`` rows; difficult objects become
    crowds, which COCO's matching ignores (neither found nor missed), as VOC ignores them."""
    out = []
    for target in targets:
        labels, boxes, difficult = unpad(target)
        out.append({"boxes": boxes.float(), "labels": labels, "iscrowd": difficult.long()})
    return out


def _float32(found: list[Detections]) -> list[dict[str, Tensor]]:
    return [
        {"boxes": d.boxes.float(), "scores": d.scores.float(), "labels": d.labels} for d in found
    ]


class DetectionMAP:
    """mAP@0.5 and mAP@[0.5:0.95] of raw detector outputs, accumulated over batches.

    Its states are the detections and targets themselves (torchmetrics gathers them across
    processes when a process group is running), not sums.
    """

    def __init__(self, grid: Grid, **postprocess_args):
        self.grid = grid
        self.postprocess_args = postprocess_args
        self.metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")

    def detections(self, outputs: Tensor) -> list[Detections]:
        return postprocess(self.grid, outputs, **self.postprocess_args)

    def update(self, outputs: Tensor, targets: Tensor) -> list[Detections]:
        """Add a batch of raw ``outputs [B, N, 5 + C]``; returns its detections (in the
        outputs' dtype; the metric keeps float32 copies)."""
        found = self.detections(outputs)
        self.metric.update(_float32(found), target_dicts(targets))
        return found

    def compute(self) -> dict[str, float]:
        """``{"map50": ..., "map": ...}`` in [0, 1] (``-1`` when there was no object)."""
        values = self.metric.compute()
        return {"map50": float(values["map_50"]), "map": float(values["map"])}

    def reset(self) -> None:
        self.metric.reset()


class MAP50(MeanAveragePrecision):
    """torchmetrics' MeanAveragePrecision fed raw detector outputs; its value is mAP@0.5
    (what Lightning logs, e.g. as ``val/map50``)."""

    def __init__(self, grid: Grid, **postprocess_args):
        super().__init__(box_format="xyxy", iou_type="bbox")
        self.grid = grid
        self.postprocess_args = postprocess_args

    def update(self, outputs: Tensor, targets: Tensor) -> None:  # type: ignore[override]
        found = postprocess(self.grid, outputs.detach(), **self.postprocess_args)
        super().update(_float32(found), target_dicts(targets))

    def compute(self) -> Tensor:  # type: ignore[override]
        return super().compute()["map_50"]
