"""Object detection as a :class:`spikezip.tasks.Task`, and its SNN measurement.

The detector's output ``[B, N, 5 + C]`` is what the SNN accumulates; boxes come out of
it only after the network (:mod:`spikezip.detection.grid`). So an SNN at equilibrium,
whose output is the QANN's, finds the QANN's detections; before it, its accumulated
output is decoded exactly as the QANN's is, at every T measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from spikezip.detection.grid import Detections, Grid
from spikezip.detection.loss import yolo_distillation, yolo_loss
from spikezip.detection.metric import MAP50, DetectionMAP
from spikezip.models.yolo import heads_of
from spikezip.snn.measure import Curve, Equilibrium, ReduceSum, output_error, sum_across
from spikezip.snn.network import Simulation
from spikezip.tasks.base import Report

# The time-steps whose mAP is measured (those up to snn.timesteps), besides equilibrium:
# mAP is not a sum over samples, so each one measured keeps its own detections.
MAP_TIMESTEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def map_timesteps(timesteps: int) -> list[int]:
    """The T measured for an SNN simulated ``timesteps`` steps: powers of two and the last."""
    steps = [t for t in MAP_TIMESTEPS if t <= timesteps]
    return steps if steps[-1] == timesteps else [*steps, timesteps]


@dataclass(frozen=True)
class Detection:
    """YOLO outputs ``[B, N, 5 + C]`` scored against padded targets ``[B, M, 6]``
    (:mod:`spikezip.data.detection`): YOLOv3's loss, detector distillation, mAP@0.5."""

    grid: Grid
    num_classes: int
    name = "detection"
    score_name = "map50"
    score_on_training = False

    @classmethod
    def of(cls, arch: dict) -> Detection:
        """The task of the detector built from ``arch`` (its heads at its input size)."""
        heads = heads_of(arch["name"], arch.get("anchors"))
        return cls(Grid(heads, arch["image_size"]), arch["num_classes"])

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return yolo_loss(self.grid, outputs, targets)

    def distillation(self, outputs: Tensor, teacher: Tensor, temperature: float) -> Tensor:
        return yolo_distillation(outputs, teacher, temperature)

    def metric(self) -> MAP50:
        return MAP50(self.grid)

    def measurement(self, timesteps: int, horizon: int) -> DetectionMeasurement:
        return DetectionMeasurement.zeros(self, timesteps, horizon)

    @property
    def report_type(self) -> type[DetectionReport]:
        return DetectionReport


def identical(a: Detections, b: Detections, tolerance: float) -> bool:
    """Same labels in the same order, boxes and scores equal within ``tolerance``
    (relative, and absolute in pixels / score units)."""
    if not torch.equal(a.labels, b.labels):
        return False
    close = dict(rtol=tolerance, atol=tolerance)
    return torch.allclose(a.boxes, b.boxes, **close) and torch.allclose(a.scores, b.scores, **close)


@dataclass
class DetectionMeasurement(Equilibrium):
    """A detector's SNN measurement: mAP at :func:`map_timesteps` and at equilibrium, the
    QANN's (and the full-precision ANN's) mAP on the same images, the images whose SNN
    detections at equilibrium are the QANN's, ``T_eq`` and the output error per T.

    Sums (``samples``, ``t_eq_counts``, ``identical``, ``output_error``) are reduced by
    :meth:`all_reduce`; the mAP metrics hold the detections themselves and are gathered
    across processes by torchmetrics when they are computed.

    "Identical" allows a relative and absolute difference of ``sqrt(eps)`` of the dtype
    (3.5e-4 in float32, 1.5e-8 in float64): summing T steps rounds differently from one
    forward pass; in float64 the detections agree to that tolerance.
    """

    task: Detection
    timesteps: list[int]
    samples: Tensor
    t_eq_counts: Tensor
    identical: Tensor
    output_error: Tensor
    snn: list[DetectionMAP] = field(default_factory=list)
    final: DetectionMAP | None = None
    qann: DetectionMAP | None = None
    ann: DetectionMAP | None = None
    ann_measured: bool = False
    _values: dict | None = None

    @classmethod
    def zeros(cls, task: Detection, timesteps: int, horizon: int) -> DetectionMeasurement:
        def z(*shape):
            return torch.zeros(shape, dtype=torch.float64)

        steps = map_timesteps(timesteps)
        return cls(
            task=task,
            timesteps=steps,
            samples=z(),
            t_eq_counts=z(horizon + 1),
            identical=z(),
            output_error=z(timesteps),
            snn=[DetectionMAP(task.grid) for _ in steps],
            final=DetectionMAP(task.grid),
            qann=DetectionMAP(task.grid),
            ann=DetectionMAP(task.grid),
        )

    def add(self, sim: Simulation, estimate, reference, targets, ann_outputs) -> None:
        self._values = None
        # Decode what the output estimates (a rate-coded SNN's rate, not its sum).
        for t, metric in zip(self.timesteps, self.snn, strict=True):
            metric.update(estimate[t - 1], targets)
        final = sim.final if estimate is sim.outputs else estimate[-1]
        found = self.final.update(final, targets)
        expected = self.qann.update(reference, targets)
        tolerance = torch.finfo(reference.dtype).eps ** 0.5
        self.identical += sum(
            identical(a, b, tolerance) for a, b in zip(found, expected, strict=True)
        )
        self.output_error += output_error(estimate, reference)
        self._add_equilibrium(sim)
        if ann_outputs is not None:
            self.ann.update(ann_outputs, targets)
            self.ann_measured = True

    def all_reduce(self, reduce_sum: ReduceSum) -> DetectionMeasurement:
        names = ("samples", "t_eq_counts", "identical", "output_error")
        totals = sum_across([getattr(self, n) for n in names], reduce_sum)
        for name, total in zip(names, totals, strict=True):
            setattr(self, name, total)
        return self

    def values(self) -> dict:
        """Every mAP (computed once; a process group, if any, takes part in it)."""
        if self._values is None:
            self._values = {
                "snn": [m.compute() for m in self.snn],
                "final": self.final.compute(),
                "qann": self.qann.compute(),
                "ann": self.ann.compute() if self.ann_measured else None,
            }
        return self._values

    @property
    def identical_fraction(self) -> float:
        return float(self.identical) / max(self.count, 1)

    def metrics(self, prefix: str = "snn/") -> dict[str, float]:
        """``map50_t001``, ``map_t001`` ... per T measured, at equilibrium, the QANN's,
        T_eq mean / max and the fraction of identical detections."""
        v = self.values()
        out = {}
        for t, value in zip(self.timesteps, v["snn"], strict=True):
            out[f"{prefix}map50_t{t:03d}"] = value["map50"]
            out[f"{prefix}map_t{t:03d}"] = value["map"]
        out[f"{prefix}map50_eq"] = v["final"]["map50"]
        out[f"{prefix}qann_map50"] = v["qann"]["map50"]
        out[f"{prefix}qann_map"] = v["qann"]["map"]
        out[f"{prefix}t_eq_mean"] = self.t_eq_mean
        out[f"{prefix}t_eq_max"] = float(self.t_eq_max)
        out[f"{prefix}identical"] = self.identical_fraction
        return out

    def report(self) -> dict:
        v = self.values()
        ann = v["ann"]
        return {
            "ann_map50": ann["map50"] if ann else None,
            "ann_map": ann["map"] if ann else None,
            "qann_map50": v["qann"]["map50"],
            "qann_map": v["qann"]["map"],
            "map_timesteps": self.timesteps,
            "snn_map50": [m["map50"] for m in v["snn"]],
            "snn_map": [m["map"] for m in v["snn"]],
            "snn_map50_eq": v["final"]["map50"],
            "snn_map_eq": v["final"]["map"],
            "identical": self.identical_fraction,
            "output_error_per_t": (self.output_error / max(self.count, 1)).tolist(),
        }

    def curve(self) -> Curve:
        v = self.values()
        values = [m["map50"] for m in v["snn"]]
        return Curve(
            "mAP@0.5", "map50", "map_vs_timestep", self.timesteps, values, v["qann"]["map50"]
        )


@dataclass(kw_only=True, eq=False)
class DetectionReport(Report):
    """A detector's ``snn_eval.json``: mAP@0.5 and mAP@[.5:.95] at ``map_timesteps`` and at
    equilibrium, the QANN's and the ANN's, the fraction of images whose detections at
    equilibrium are the QANN's, and the output error per T (:class:`DetectionMeasurement`)."""

    task: ClassVar[str] = "detection"
    score_name: ClassVar[str] = "map50"

    qann_map50: float
    qann_map: float
    map_timesteps: list[int]
    snn_map50: list[float]
    snn_map: list[float]
    snn_map50_eq: float
    snn_map_eq: float
    identical: float
    ann_map50: float | None = None
    ann_map: float | None = None
    output_error_per_t: list[float] = field(default_factory=list)

    def curve(self) -> Curve:
        return Curve(
            "mAP@0.5",
            "map50",
            "map_vs_timestep",
            self.map_timesteps,
            self.snn_map50,
            self.qann_map50,
        )

    @property
    def ann_score(self) -> float | None:
        return self.ann_map50

    @property
    def qann_score(self) -> float:
        return self.qann_map50

    def equilibrium(self) -> dict[str, float]:
        return {"identical": self.identical}

    def _equilibrium_text(self) -> str:
        return (
            f"mAP@0.5 {self.snn_map50_eq:.1%}, mAP@[.5:.95] {self.snn_map_eq:.1%}; images "
            f"whose detections are the QANN's {self.identical:.1%}"
        )
