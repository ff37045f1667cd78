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


class Task(Protocol):
    """The task-specific part of training and evaluating a network."""

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Supervised loss against the labels (the teacher; PET's ``hard`` terms)."""
        ...

    def distillation(self, outputs: Tensor, teacher: Tensor, temperature: float) -> Tensor:
        """Loss against the teacher's outputs (PET's ``soft`` terms)."""
        ...

    def metric(self) -> Metric:
        """A fresh metric of one network's quality, for training and validation logs."""
        ...

    def correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Score of ``outputs [..., B, *]`` summed over the batch: one count per leading
        index (e.g. ``[T]`` for the outputs after each time-step). A sum, so it can be
        added over batches and processes."""
        ...

    def agree(self, outputs: Tensor, reference: Tensor) -> Tensor:
        """Number of samples whose prediction from ``outputs`` is the one from ``reference``."""
        ...


@dataclass(frozen=True)
class Classification:
    """Class scores ``[B, C]``, integer labels ``[B]``; the prediction is the argmax.

    ``num_classes`` is needed only for :meth:`metric`.
    """

    num_classes: int | None = None

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
        return (self.predict(outputs) == targets).sum(-1)

    def agree(self, outputs: Tensor, reference: Tensor) -> Tensor:
        return (self.predict(outputs) == self.predict(reference)).sum(-1)


def task_for(arch: dict) -> Task:
    """The task of a network built from ``arch`` (every model today is a classifier)."""
    return Classification(arch["num_classes"])
