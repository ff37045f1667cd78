"""Classification: class scores ``[B, C]`` against integer labels ``[B]``, and an SNN's
accuracy at every time-step."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from spikezip.snn.measure import Curve, Equilibrium, ReduceSum, output_error, sum_across
from spikezip.tasks.base import Report

if TYPE_CHECKING:  # torchmetrics imports matplotlib: only the training modules need it
    from torchmetrics import Metric


@dataclass(frozen=True)
class Classification:
    """Class scores ``[B, C]``, integer labels ``[B]``; the prediction is the argmax.

    ``num_classes`` is needed only for :meth:`metric`.
    """

    num_classes: int | None = None
    name = "classification"
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
        # torchmetrics imports matplotlib: loaded only by the training modules that log it
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

    def measurement(self, timesteps: int, horizon: int) -> ClassificationMeasurement:
        return ClassificationMeasurement.zeros(timesteps, horizon, self)

    @property
    def report_type(self) -> type[ClassificationReport]:
        return ClassificationReport


class StepScores:
    """One batch's per-T counts, filled one step at a time on the simulation's device (no
    ``[T, B, classes]`` outputs, no synchronisation per step): samples right, samples
    agreeing with the QANN, and the summed relative output error, after each step."""

    def __init__(self, task, timesteps: int, reference: Tensor, targets: Tensor, release,
                 overhead: int):  # fmt: skip
        self.task, self.reference, self.targets = task, reference, targets
        self.release, self.overhead = release, overhead
        device = reference.device
        self.correct = torch.zeros(timesteps, dtype=torch.long, device=device)
        self.agree = torch.zeros(timesteps, dtype=torch.long, device=device)
        self.error = torch.zeros(timesteps, dtype=reference.dtype, device=device)

    def __call__(self, t: int, output: Tensor) -> None:
        # The estimate as Release.estimates gives it: a method's own steps count nothing.
        estimate = self.release.estimate(output, max(t - self.overhead, 1))
        self.correct[t - 1] = self.task.correct(output, self.targets)
        self.agree[t - 1] = self.task.agree(estimate, self.reference)
        self.error[t - 1] = output_error(estimate, self.reference, on_device=True)


@dataclass
class ClassificationMeasurement(Equilibrium):
    """A classifier's measurement: sums over the samples measured (float64 counts; see
    :meth:`all_reduce`).

    Attributes:
        correct: ``[timesteps]`` samples the SNN got right at ``T = 1..timesteps``.
        reference_correct: samples the ANN it came from (the QANN) got right.
        agree: samples whose SNN prediction (at equilibrium, or after the last step
            simulated where not reached) is the QANN's.
        samples: samples measured.
        t_eq_counts: ``[horizon + 1]`` samples that reached equilibrium at ``T_eq = i``;
            the others never did within the horizon.
        ann_correct, ann_samples: the same for the full-precision ANN, when one was given.
        agree_per_t: ``[timesteps]`` samples whose SNN prediction after T steps is the QANN's.
        final_correct: samples the SNN got right at equilibrium (or after the last step
            simulated where not reached).
        output_error: ``[timesteps]`` per sample, ``|estimate - QANN output|_1 /
            |QANN output|_1`` after T steps, summed (the estimate is the accumulated output,
            or its rate for a constant input: :meth:`Release.estimate`).
        task: how outputs are scored (not a sum: left out of :meth:`all_reduce`).
    """

    correct: Tensor
    reference_correct: Tensor
    agree: Tensor
    samples: Tensor
    t_eq_counts: Tensor
    ann_correct: Tensor
    ann_samples: Tensor
    agree_per_t: Tensor
    output_error: Tensor
    final_correct: Tensor
    task: Classification = field(default_factory=Classification, repr=False)

    @classmethod
    def zeros(
        cls, timesteps: int, horizon: int, task: Classification | None = None
    ) -> ClassificationMeasurement:
        def z(*shape):
            return torch.zeros(shape, dtype=torch.float64)

        return cls(
            z(timesteps),
            z(),
            z(),
            z(),
            z(horizon + 1),
            z(),
            z(),
            z(timesteps),
            z(timesteps),
            z(),
            task or Classification(),
        )

    def scorer(self, reference: Tensor, targets: Tensor, release, overhead: int) -> StepScores:
        """The per-step scores of one batch, filled as it is simulated (see
        :meth:`spikezip.snn.measure.Measurement.add`)."""
        return StepScores(self.task, len(self.correct), reference, targets, release, overhead)

    def add(self, sim, estimate, reference, targets, ann_outputs, scores=None) -> None:
        task = self.task
        if scores is None:
            self.correct += task.correct(sim.outputs, targets).double().cpu()
            self.agree_per_t += task.agree(estimate, reference).double().cpu()
            self.output_error += output_error(estimate, reference)
        else:
            self.correct += scores.correct.double().cpu()
            self.agree_per_t += scores.agree.double().cpu()
            self.output_error += scores.error.double().cpu()
        self.reference_correct += float(task.correct(reference, targets))
        self.agree += float(task.agree(sim.final, reference))
        self.final_correct += float(task.correct(sim.final, targets))
        self._add_equilibrium(sim)
        if ann_outputs is not None:
            self.ann_correct += float(task.correct(ann_outputs, targets))
            self.ann_samples += len(targets)

    def all_reduce(self, reduce_sum: ReduceSum) -> ClassificationMeasurement:
        """Sum every count over processes (``reduce_sum`` adds one tensor), in place."""
        names = [f.name for f in fields(self) if f.name != "task"]
        totals = sum_across([getattr(self, n) for n in names], reduce_sum)
        for name, total in zip(names, totals, strict=True):
            setattr(self, name, total)
        return self

    @property
    def snn_accuracy(self) -> list[float]:
        """Accuracy at ``T = 1..timesteps`` (index ``T - 1``)."""
        return (self.correct / max(self.count, 1)).tolist()

    @property
    def qann_accuracy(self) -> float:
        return float(self.reference_correct) / max(self.count, 1)

    @property
    def equilibrium_accuracy(self) -> float:
        """The SNN's accuracy at equilibrium (after the last step simulated where not
        reached)."""
        return float(self.final_correct) / max(self.count, 1)

    @property
    def ann_accuracy(self) -> float | None:
        """The full-precision ANN's accuracy, if one was measured."""
        return float(self.ann_correct / self.ann_samples) if self.ann_samples else None

    @property
    def agreement(self) -> float:
        return float(self.agree) / max(self.count, 1)

    @property
    def agreement_per_t(self) -> list[float]:
        """Argmax agreement with the QANN after ``T = 1..timesteps`` steps."""
        return (self.agree_per_t / max(self.count, 1)).tolist()

    @property
    def output_error_per_t(self) -> list[float]:
        """Mean relative L1 distance to the QANN's output after ``T = 1..timesteps`` steps."""
        return (self.output_error / max(self.count, 1)).tolist()

    def metrics(self, prefix: str = "snn/") -> dict[str, float]:
        """Flat scalars for loggers: ``acc_t001`` ... per T, T_eq mean / max, agreement."""
        out = {f"{prefix}acc_t{t:03d}": acc for t, acc in enumerate(self.snn_accuracy, 1)}
        out[f"{prefix}t_eq_mean"] = self.t_eq_mean
        out[f"{prefix}t_eq_max"] = float(self.t_eq_max)
        out[f"{prefix}agreement"] = self.agreement
        out[f"{prefix}qann_acc"] = self.qann_accuracy
        return out

    def report(self) -> dict:
        return {
            "ann_accuracy": self.ann_accuracy,
            "qann_accuracy": self.qann_accuracy,
            "snn_accuracy": self.snn_accuracy,
            "snn_accuracy_eq": self.equilibrium_accuracy,
            "agreement": self.agreement,
            "agreement_per_t": self.agreement_per_t,  # how far from its ANN, at every T
            "output_error_per_t": self.output_error_per_t,
        }

    def curve(self) -> Curve:
        steps = list(range(1, len(self.correct) + 1))
        return Curve(
            "accuracy", "accuracy", "acc_vs_timestep", steps, self.snn_accuracy, self.qann_accuracy
        )


@dataclass(kw_only=True, eq=False)
class ClassificationReport(Report):
    """A classifier's ``snn_eval.json``: accuracy at ``T = 1..timesteps`` (index
    ``T - 1``), the QANN's and the ANN's, agreement with the QANN at equilibrium and after
    every T, and the output error per T (:class:`ClassificationMeasurement`)."""

    task: ClassVar[str] = "classification"
    score_name: ClassVar[str] = "acc"

    qann_accuracy: float
    snn_accuracy: list[float]
    ann_accuracy: float | None = None
    snn_accuracy_eq: float | None = None  # None: a report written before it was measured
    agreement: float | None = None
    agreement_per_t: list[float] = field(default_factory=list)
    output_error_per_t: list[float] = field(default_factory=list)

    def curve(self) -> Curve:
        steps = list(range(1, len(self.snn_accuracy) + 1))
        return Curve(
            "accuracy", "accuracy", "acc_vs_timestep", steps, self.snn_accuracy, self.qann_accuracy
        )

    @property
    def ann_score(self) -> float | None:
        return self.ann_accuracy

    @property
    def qann_score(self) -> float:
        return self.qann_accuracy

    def equilibrium(self) -> dict[str, float]:
        return {"agreement": self.agreement}

    def _equilibrium_text(self) -> str:
        parts = [] if self.snn_accuracy_eq is None else [f"accuracy {self.snn_accuracy_eq:.1%}"]
        if self.agreement is not None:
            parts.append(f"agreement with the QANN {self.agreement:.1%}")
        return ", ".join(parts)
