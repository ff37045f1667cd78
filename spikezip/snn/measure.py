"""The measurement engine: an SNN measured over a dataset at every time-step, from one
simulation per batch. It knows no task: each task (:mod:`spikezip.tasks`) supplies the
:class:`Measurement` that scores the outputs.

Everything measured is a sum over samples (correct counts per T, agreement, a histogram
of ``T_eq``, the meters' spike and distance totals), so the measurements of several
processes, each holding part of the data, add up to the measurement of the whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from rich.progress import Progress
from torch import Tensor, nn

from spikezip.snn.network import MAX_TIMESTEPS, Simulation, SpikingNetwork
from spikezip.snn.reference import run_with_activations

# Adds a tensor over all processes (e.g. ``trainer.strategy.reduce(t, reduce_op="sum")``);
# the identity when one process holds all the data.
ReduceSum = Callable[[Tensor], Tensor]


def sum_across(tensors: Sequence[Tensor], reduce_sum: ReduceSum) -> list[Tensor]:
    """Each tensor summed over processes, with one collective call for all of them."""
    # Gathered on the CPU: the sums may sit on the simulation's device, a count beside them.
    flat = torch.cat([t.detach().double().flatten().cpu() for t in tensors])
    flat = reduce_sum(flat.to(tensors[0].device)).cpu()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].reshape(t.shape).to(t.dtype))
        start += t.numel()
    return out


class Meter(Protocol):
    """Something else measured during the same simulation (energy, feature maps).

    ``needs_activations``: whether :meth:`begin_batch` wants the ANN's activations (the
    ANN then records them in its one forward per batch). ``follows_rows``: whether
    :meth:`on_step` still measures right when settled samples have left the simulated
    batch (a sum over samples to which a settled one adds nothing); if any meter does not,
    the batch is simulated whole.
    """

    needs_activations: bool
    follows_rows: bool

    def begin_batch(self, x: Tensor, activations: dict[str, Tensor]) -> None: ...

    def on_step(self, t: int, snn: SpikingNetwork) -> None: ...

    def all_reduce(self, reduce_sum: ReduceSum) -> None: ...


class LayerSums:
    """Base of meters that add one ``[timesteps]`` curve per neuron layer over samples
    (:attr:`totals`, :attr:`samples`); the sums stay on the simulation's device."""

    needs_activations = False
    follows_rows = False

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
    """What :func:`measure_snn` accumulates for one task
    (:meth:`spikezip.tasks.Task.measurement`)."""

    def add(
        self,
        sim: Simulation,
        estimate: Tensor | None,
        reference: Tensor,
        targets: Tensor,
        ann_outputs: Tensor | None,
    ) -> None:
        """One batch: the simulation, its per-T estimate of the output ``[T, B, ...]``, the
        QANN's output, the labels and (if measured) the full-precision ANN's output.

        A measurement may instead score each step as it is simulated: it then has a
        method ``scorer(reference, targets, release, overhead)`` that returns
        ``on_output(t, output)`` for :meth:`SpikingNetwork.run`, and :func:`measure_snn`
        passes ``estimate=None``, a simulation without ``outputs`` and ``scores=`` that
        scorer."""
        ...

    def all_reduce(self, reduce_sum: ReduceSum) -> Measurement: ...

    def metrics(self, prefix: str = "snn/") -> dict[str, float]: ...

    def report(self) -> dict:
        """The task's part of ``snn_eval.json``."""
        ...

    def curve(self) -> Curve: ...


class Measured(Protocol):
    """What :func:`measure_snn` needs of a task: an empty measurement of an SNN at
    ``T = 1..timesteps`` whose samples settle by ``horizon``."""

    def measurement(self, timesteps: int, horizon: int) -> Measurement: ...


def output_error(estimate: Tensor, reference: Tensor, on_device: bool = False) -> Tensor:
    """``[..., ]`` per sample ``|estimate - reference|_1 / |reference|_1``, summed over the
    batch: ``[T]`` for ``estimate [T, B, ...]``, a scalar for one step's ``[B, ...]``
    (``reference [B, ...]``); as float64 on the CPU, or as it is on its device."""
    error = (estimate - reference).abs().flatten(estimate.dim() - reference.dim() + 1).sum(-1)
    scale = reference.abs().flatten(1).sum(-1).clamp_min(torch.finfo(reference.dtype).tiny)
    total = (error / scale).sum(-1)
    return total if on_device else total.double().cpu()


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
    task: Measured,
    meters: Sequence[Meter] = (),
    ann: nn.Module | None = None,
    drop_settled: bool = True,
) -> Measurement:
    """``task``'s score at every ``T <= timesteps``, ``T_eq`` and agreement with the ANN ``qann``.

    Each batch is simulated once for ``max(timesteps, max_timesteps)`` steps (steps after
    every sample settled cost nothing), or for ``timesteps`` when the input keeps coming
    (a rate-coded SNN never settles); the curve is read off the accumulated outputs.
    ``qann`` should be the network ``snn`` came from; it runs once per batch, in eval
    mode, and so does ``ann`` (its full-precision teacher) if given. ``meters`` see every
    batch and step. Samples at equilibrium leave their batch (``drop_settled``, where the
    SNN and every meter allow it), so a curve costs the sum of the samples' ``T_eq``, not
    the slowest sample's per batch. Returns this process's sums.
    """
    settles = snn.release_steps is not None
    horizon = max(timesteps, max_timesteps) if settles else timesteps
    dtype = snn.dtype
    totals = task.measurement(timesteps, horizon)
    names = list(snn.neurons) if any(m.needs_activations for m in meters) else []
    # Settled samples leave the batch: a curve costs the sum of the samples' T_eq.
    drop_settled = drop_settled and all(getattr(m, "follows_rows", False) for m in meters)
    if ann is not None:
        ann.eval()
    if limit_batches is None and hasattr(batches, "__len__"):
        limit_batches = len(batches)

    def on_step(t: int, net: SpikingNetwork) -> None:
        for meter in meters:
            meter.on_step(t, net)

    with Progress(transient=True, disable=not progress) as bar:
        task_id = bar.add_task(f"SNN at T=1..{timesteps}, batch by batch", total=limit_batches)
        for i, (x, y) in enumerate(batches):
            if limit_batches is not None and i >= limit_batches:
                break
            x, y = x.to(device=device, dtype=dtype), y.to(device)
            reference, activations = run_with_activations(qann, x, names)
            for meter in meters:
                meter.begin_batch(x, activations)
            # A task that scores each step as it comes keeps no [T, B, ...] outputs.
            scorer = getattr(totals, "scorer", None)
            scores = scorer(reference, y, snn.release, snn.overhead) if scorer else None
            sim = snn.run(
                x,
                horizon,
                on_step=on_step if meters else None,
                keep=timesteps,
                drop_settled=drop_settled,
                on_output=scores,
            )
            ann_outputs = ann(x) if ann is not None else None
            if scores is None:
                estimate = snn.release.estimates(sim.outputs, snn.overhead)
                totals.add(sim, estimate, reference, y, ann_outputs)
            else:
                totals.add(sim, None, reference, y, ann_outputs, scores=scores)
            bar.advance(task_id)
    return totals
