"""What is specific to the task a network solves: its losses, its score, its predictions.

The pipeline, PET and the per-T measurement of an SNN only call a :class:`Task`; the
classification of today's models is one implementation, and another task (object
detection) is another one beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # torchmetrics imports matplotlib: only the training modules need it
    from torchmetrics import Metric

    from spikezip.snn.measure import Measurement


class Task(Protocol):
    """The task-specific part of training and evaluating a network.

    ``score_name``: what :meth:`metric` measures, in log keys (``val/acc``, ``val/map50``).
    ``score_on_training``: whether the training batches are scored too (a detector's mAP
    over the training set costs more than it tells).
    """

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


@dataclass(frozen=True)
class Classification:
    """Class scores ``[B, C]``, integer labels ``[B]``; the prediction is the argmax.

    ``num_classes`` is needed only for :meth:`metric`.
    """

    num_classes: int | None = None
    score_name = "acc"
    score_on_training = True

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def distillation(self, outputs: Tensor, teacher: Tensor, temperature: float) -> Tensor:
        """``KL(softmax(teacher / tau) || softmax(outputs / tau)) * tau^2`` (batch mean)."""
        tau = temperature
        kl = F.kl_div(
            F.log_softmax(outputs / tau, -1),
            F.log_softmax(teacher.detach() / tau, -1),
            reduction="batchmean",
            log_target=True,
        )
        return kl * tau**2

    def metric(self) -> Metric:
        from torchmetrics.classification import MulticlassAccuracy

        if self.num_classes is None:
            raise ValueError("Classification.metric() needs num_classes")
        return MulticlassAccuracy(self.num_classes, average="micro")

    def predict(self, outputs: Tensor) -> Tensor:
        return outputs.argmax(-1)

    def correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Samples of ``outputs [..., B, C]`` predicted right, one count per leading index
        (e.g. ``[T]`` for the outputs after each time-step). A sum, so it can be added over
        batches and processes."""
        return (self.predict(outputs) == targets).sum(-1)

    def agree(self, outputs: Tensor, reference: Tensor) -> Tensor:
        """Samples whose prediction from ``outputs`` is the one from ``reference``."""
        return (self.predict(outputs) == self.predict(reference)).sum(-1)

    def measurement(self, timesteps: int, horizon: int) -> Measurement:
        from spikezip.snn.measure import SNNMeasurement

        return SNNMeasurement.zeros(timesteps, horizon, self)


def task_for(arch: dict) -> Task:
    """The task of a network built from ``arch``: detection for the YOLO detectors
    (:mod:`spikezip.detection`), classification for every other model."""
    from spikezip.models import DETECTORS

    if arch["name"] in DETECTORS:
        from spikezip.detection.task import Detection

        return Detection.of(arch)
    return Classification(arch["num_classes"])
