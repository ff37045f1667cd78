"""What is specific to the task a network solves: its losses, its score, its predictions.

The pipeline, PET and the per-T measurement of an SNN only call a :class:`Task`; each
task (:mod:`spikezip.tasks.classification`, :mod:`spikezip.tasks.detection`) owns its
measurement and reads its part of a report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from torch import Tensor

from spikezip.snn.measure import Curve, Measurement

if TYPE_CHECKING:  # torchmetrics imports matplotlib: only the training modules need it
    from torchmetrics import Metric


class Task(Protocol):
    """The task-specific part of training and evaluating a network.

    ``name``: the task's name in configs and reports (``task=detection``).
    ``score_name``: what :meth:`metric` measures, in log keys (``val/acc``, ``val/map50``).
    ``score_on_training``: whether the training batches are scored too (a detector's mAP
    over the training set costs more than it tells).
    """

    name: str
    score_name: str
    score_on_training: bool

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Supervised loss against the labels (the teacher; PET's ``hard`` terms)."""
        ...

    def distillation(self, outputs: Tensor, teacher: Tensor, temperature: float) -> Tensor:
        """Loss against the teacher's outputs (PET's ``soft`` terms)."""
        ...

    def metric(self) -> Metric:
        """A fresh metric of one network's quality, for training and validation logs."""
        ...

    def measurement(self, timesteps: int, horizon: int) -> Measurement:
        """An empty measurement of an SNN at ``T = 1..timesteps`` whose samples settle by
        ``horizon`` (what :func:`spikezip.snn.measure_snn` fills)."""
        ...

    @staticmethod
    def curve_of(report: dict) -> Curve:
        """The per-T curve of an ``snn_eval.json`` of this task."""
        ...
