"""Accuracy of an SNN at every time-step, from one simulation per batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from rich.progress import Progress
from torch import Tensor, nn

from spikezip.snn.network import SpikingNetwork


class StepObserver(Protocol):
    """Something that measures during an evaluation (energy, feature maps)."""

    def begin_batch(self, qann: nn.Module, x: Tensor) -> None: ...

    def on_step(self, t: int, snn: SpikingNetwork) -> None: ...


@dataclass
class SNNEvaluation:
    """What :func:`evaluate_snn` measured.

    Attributes:
        snn_accuracy: accuracy at ``T = 1..timesteps`` (index ``T - 1``).
        qann_accuracy: the QANN's accuracy on the same samples.
        agreement: fraction of samples whose SNN argmax at equilibrium (or at the last
            step simulated, where not reached) equals the QANN's.
        t_eq: ``[N]`` per-sample equilibrium step, ``-1`` where not reached.
        samples: number of samples evaluated.
    """

    snn_accuracy: list[float]
    qann_accuracy: float
    agreement: float
    t_eq: Tensor
    samples: int

    @property
    def settled(self) -> Tensor:
        return self.t_eq[self.t_eq >= 0]

    @property
    def t_eq_mean(self) -> float:
        """Mean ``T_eq`` over samples that reached equilibrium (NaN if none did)."""
        return float(self.settled.float().mean()) if len(self.settled) else float("nan")

    @property
    def t_eq_max(self) -> int:
        """Largest ``T_eq`` (``-1`` if some sample never reached equilibrium)."""
        return -1 if bool((self.t_eq < 0).any()) else int(self.t_eq.max())

    def metrics(self, prefix: str = "snn/") -> dict[str, float]:
        """Flat scalars for loggers: ``acc_t001`` ... per T, T_eq mean / max, agreement."""
        out = {f"{prefix}acc_t{t:03d}": acc for t, acc in enumerate(self.snn_accuracy, 1)}
        out[f"{prefix}t_eq_mean"] = self.t_eq_mean
        out[f"{prefix}t_eq_max"] = float(self.t_eq_max)
        out[f"{prefix}agreement"] = self.agreement
        out[f"{prefix}qann_acc"] = self.qann_accuracy
        return out


@torch.no_grad()
def evaluate_snn(
    snn: SpikingNetwork,
    qann: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    timesteps: int,
    max_timesteps: int | None = None,
    limit_batches: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    observers: Sequence[StepObserver] = (),
) -> SNNEvaluation:
    """Accuracy at every ``T <= timesteps``, per-sample ``T_eq`` and QANN agreement.

    Each batch is simulated once for ``max(timesteps, max_timesteps)`` steps (steps after
    every sample settled cost nothing); the accuracy curve is read off the accumulated
    outputs. ``qann`` should be the network ``snn`` came from, in eval mode.
    ``observers`` (e.g. :class:`spikezip.snn.energy.EnergyMeter`) see every batch and step.
    """
    horizon = max(timesteps, max_timesteps or 0)
    dtype = snn.dtype
    correct = torch.zeros(timesteps, dtype=torch.float64)
    qann_correct = agree = samples = 0
    t_eqs: list[Tensor] = []
    total = None
    if limit_batches is not None:
        total = limit_batches
    elif hasattr(batches, "__len__"):
        total = len(batches)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("SNN evaluation", total=total)
        for i, (x, y) in enumerate(batches):
            if limit_batches is not None and i >= limit_batches:
                break
            x, y = x.to(device=device, dtype=dtype), y.to(device)
            for observer in observers:
                observer.begin_batch(qann, x)

            def on_step(t: int, net: SpikingNetwork) -> None:
                for observer in observers:
                    observer.on_step(t, net)

            sim = snn.run(x, horizon, on_step=on_step if observers else None)
            predictions = sim.outputs[:timesteps].argmax(-1)  # [T, B]
            correct += (predictions == y).sum(1).double().cpu()
            expected = qann(x).argmax(-1)
            qann_correct += int((expected == y).sum())
            agree += int((sim.final.argmax(-1) == expected).sum())
            samples += len(y)
            t_eqs.append(sim.t_eq.cpu())
            bar.advance(task)
    if samples == 0:
        raise ValueError("evaluate_snn got no samples: the data loader is empty")
    return SNNEvaluation(
        snn_accuracy=(correct / samples).tolist(),
        qann_accuracy=qann_correct / samples,
        agreement=agree / samples,
        t_eq=torch.cat(t_eqs),
        samples=samples,
    )
