"""An SNN measured over a dataset at every time-step, from one simulation per batch.

Everything measured is a sum over samples (correct counts per T, agreement, a histogram
of ``T_eq``, the meters' spike and distance totals), so the measurements of several
processes, each holding part of the data, add up to the measurement of the whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

import torch
from rich.progress import Progress
from torch import Tensor, nn

from spikezip.snn.network import MAX_TIMESTEPS, Simulation, SpikingNetwork
from spikezip.snn.reference import run_with_activations
from spikezip.tasks import Classification, Task

# Adds a tensor over all processes (e.g. ``trainer.strategy.reduce(t, reduce_op="sum")``);
# the identity when one process holds all the data.
ReduceSum = Callable[[Tensor], Tensor]


def sum_across(tensors: Sequence[Tensor], reduce_sum: ReduceSum) -> list[Tensor]:
    """Each tensor summed over processes, with one collective call for all of them."""
    flat = torch.cat([t.detach().double().flatten() for t in tensors])
    flat = reduce_sum(flat.to(tensors[0].device)).cpu()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].reshape(t.shape).to(t.dtype))
        start += t.numel()
    return out


class Meter(Protocol):
    """Something else measured during the same simulation (energy, feature maps).

    ``needs_activations``: whether :meth:`begin_batch` wants the ANN's activations (the
    ANN then records them in its one forward per batch).
    """

    needs_activations: bool

    def begin_batch(self, x: Tensor, activations: dict[str, Tensor]) -> None: ...

    def on_step(self, t: int, snn: SpikingNetwork) -> None: ...

    def all_reduce(self, reduce_sum: ReduceSum) -> None: ...


class LayerSums:
    """Base of meters that add one ``[timesteps]`` curve per neuron layer over samples
    (:attr:`totals`, :attr:`samples`); the sums stay on the simulation's device."""

    needs_activations = False

    def __init__(self, snn: SpikingNetwork, timesteps: int):
        self.timesteps = timesteps
        self.neurons = snn.neurons  # looked up once, not on every step
        self.totals = {name: torch.zeros(timesteps, dtype=torch.float64) for name in self.neurons}
        self.samples = torch.zeros((), dtype=torch.float64)

    def begin_batch(self, x: Tensor, activations: dict[str, Tensor]) -> None:
        self.samples += len(x)
        self.totals = {k: v.to(x.device) for k, v in self.totals.items()}

    def all_reduce(self, reduce_sum: ReduceSum) -> None:
        """Sum the totals over processes, in place."""
        *totals, self.samples = sum_across([*self.totals.values(), self.samples], reduce_sum)
        self.totals = dict(zip(self.totals, totals, strict=True))

    def per_sample(self) -> dict[str, Tensor]:
        """Each layer's curve averaged over the samples (on the CPU)."""
        samples = max(float(self.samples), 1.0)
        return {name: v.cpu() / samples for name, v in self.totals.items()}


@dataclass(frozen=True)
class Curve:
    """What the per-T figure of a measurement shows: ``values`` (a score in [0, 1]) at
    ``timesteps``, the QANN's score as ``reference``; ``name`` labels the axis, ``key``
    the CSV column and ``stem`` the files (``<stem>.csv``, ``<stem>.png``)."""

    name: str
    key: str
    stem: str
    timesteps: list[int]
    values: list[float]
    reference: float | None

    @classmethod
    def of_report(cls, summary: dict) -> Curve:
        """The curve of an ``snn_eval.json`` (a classifier's accuracy at every T, or a
        detector's mAP@0.5 at the T it was measured at)."""
        if "snn_map50" in summary:
            return cls(
                "mAP@0.5", "map50", "map_vs_timestep", summary["map_timesteps"],
                summary["snn_map50"], summary["qann_map50"],
            )  # fmt: skip
        accuracy = summary["snn_accuracy"]
        steps = list(range(1, len(accuracy) + 1))
        return cls(
            "accuracy", "accuracy", "acc_vs_timestep", steps, accuracy, summary["qann_accuracy"]
        )


class Equilibrium:
    """The ``T_eq`` statistics every measurement shares, from its ``samples`` and
    ``t_eq_counts`` sums (``t_eq_counts[i]``: samples that settled at ``T_eq = i``)."""

    samples: Tensor
    t_eq_counts: Tensor

    def _add_equilibrium(self, sim: Simulation) -> None:
        self.samples += len(sim.t_eq)
        settled = sim.t_eq[sim.t_eq >= 0].cpu()
        self.t_eq_counts += torch.bincount(settled, minlength=len(self.t_eq_counts)).double()

    @property
    def count(self) -> int:
        return int(self.samples)

    @property
    def settled(self) -> int:
        """Samples that reached equilibrium."""
        return int(self.t_eq_counts.sum())

    @property
    def t_eq_mean(self) -> float:
        """Mean ``T_eq`` over the samples that reached equilibrium (NaN if none did)."""
        if not self.settled:
            return math.nan
        steps = torch.arange(len(self.t_eq_counts), dtype=torch.float64)
        return float((steps * self.t_eq_counts).sum()) / self.settled

    @property
    def t_eq_max(self) -> int:
        """Largest ``T_eq`` (``-1`` if some sample never reached equilibrium)."""
        if self.settled < self.count or not self.settled:
            return -1
        return int(self.t_eq_counts.nonzero().max())


class Measurement(Protocol):
    """What :func:`measure_snn` accumulates for one task (:meth:`Task.measurement`)."""

    def add(
        self,
        sim: Simulation,
        estimate: Tensor,
        reference: Tensor,
        targets: Tensor,
        ann_outputs: Tensor | None,
    ) -> None:
        """One batch: the simulation, its per-T estimate of the output ``[T, B, ...]``, the
        QANN's output, the labels and (if measured) the full-precision ANN's output."""
        ...

    def all_reduce(self, reduce_sum: ReduceSum) -> Measurement: ...

    def metrics(self, prefix: str = "snn/") -> dict[str, float]: ...

    def report(self) -> dict:
        """The task's part of ``snn_eval.json``."""
        ...

    def curve(self) -> Curve: ...

    def quality(self) -> tuple[str, float | None, float]:
        """``(name, ANN score or None, QANN score)``: what a drop from teacher is read on."""
        ...


def output_error(estimate: Tensor, reference: Tensor) -> Tensor:
    """``[T]`` per sample ``|estimate - reference|_1 / |reference|_1``, summed over the batch."""
    error = (estimate - reference).abs().flatten(2).sum(-1)
    scale = reference.abs().flatten(1).sum(-1).clamp_min(torch.finfo(reference.dtype).tiny)
    return (error / scale).sum(-1).double().cpu()


@dataclass
class SNNMeasurement(Equilibrium):
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
    task: Classification = field(default_factory=Classification, repr=False)

    @classmethod
    def zeros(
        cls, timesteps: int, horizon: int, task: Classification | None = None
    ) -> SNNMeasurement:
        def z(*shape):
            return torch.zeros(shape, dtype=torch.float64)

        return cls(
            z(timesteps), z(), z(), z(), z(horizon + 1), z(), z(), z(timesteps), z(timesteps),
            task or Classification(),
        )  # fmt: skip

    def add(self, sim, estimate, reference, targets, ann_outputs) -> None:
        task = self.task
        self.correct += task.correct(sim.outputs, targets).double().cpu()
        self.agree_per_t += task.agree(estimate, reference).double().cpu()
        self.output_error += output_error(estimate, reference)
        self.reference_correct += float(task.correct(reference, targets))
        self.agree += float(task.agree(sim.final, reference))
        self._add_equilibrium(sim)
        if ann_outputs is not None:
            self.ann_correct += float(task.correct(ann_outputs, targets))
            self.ann_samples += len(targets)

    def all_reduce(self, reduce_sum: ReduceSum) -> SNNMeasurement:
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
            "agreement": self.agreement,
            "agreement_per_t": self.agreement_per_t,  # how far from its ANN, at every T
            "output_error_per_t": self.output_error_per_t,
        }

    def curve(self) -> Curve:
        steps = list(range(1, len(self.correct) + 1))
        return Curve(
            "accuracy", "accuracy", "acc_vs_timestep", steps, self.snn_accuracy, self.qann_accuracy
        )

    def quality(self) -> tuple[str, float | None, float]:
        return "accuracy", self.ann_accuracy, self.qann_accuracy


@torch.no_grad()
def measure_snn(
    snn: SpikingNetwork,
    qann: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    timesteps: int,
    max_timesteps: int = MAX_TIMESTEPS,
    limit_batches: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    meters: Sequence[Meter] = (),
    task: Task | None = None,
    ann: nn.Module | None = None,
) -> Measurement:
    """The task's score at every ``T <= timesteps``, ``T_eq`` and agreement with the ANN ``qann``.

    Each batch is simulated once for ``max(timesteps, max_timesteps)`` steps (steps after
    every sample settled cost nothing), or for ``timesteps`` when the input keeps coming
    (a rate-coded SNN never settles); the curve is read off the accumulated outputs.
    ``qann`` should be the network ``snn`` came from; it runs once per batch, in eval
    mode, and so does ``ann`` (its full-precision teacher) if given. ``meters`` see every
    batch and step. Returns this process's sums.
    """
    task = task or Classification()
    settles = snn.release_steps is not None
    horizon = max(timesteps, max_timesteps) if settles else timesteps
    dtype = snn.dtype
    totals = task.measurement(timesteps, horizon)
    names = list(snn.neurons) if any(m.needs_activations for m in meters) else []
    if ann is not None:
        ann.eval()
    if limit_batches is None and hasattr(batches, "__len__"):
        limit_batches = len(batches)

    def on_step(t: int, net: SpikingNetwork) -> None:
        for meter in meters:
            meter.on_step(t, net)

    with Progress(transient=True, disable=not progress) as bar:
        task_id = bar.add_task("SNN measurement", total=limit_batches)
        for i, (x, y) in enumerate(batches):
            if limit_batches is not None and i >= limit_batches:
                break
            x, y = x.to(device=device, dtype=dtype), y.to(device)
            reference, activations = run_with_activations(qann, x, names)
            for meter in meters:
                meter.begin_batch(x, activations)
            sim = snn.run(x, horizon, on_step=on_step if meters else None, keep=timesteps)
            ann_outputs = ann(x) if ann is not None else None
            totals.add(sim, snn.release.estimates(sim.outputs), reference, y, ann_outputs)
            bar.advance(task_id)
    return totals
