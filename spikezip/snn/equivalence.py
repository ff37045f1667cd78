"""Layer-by-layer evidence that an SNN at equilibrium equals the QANN it came from."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
from rich.progress import Progress
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from spikezip.snn.network import MAX_TIMESTEPS, SpikingNetwork
from spikezip.snn.reference import run_with_activations


@dataclass
class LayerReport:
    """One neuron layer: SNN accumulated output (``tracer * Vthr``) vs QANN Q-ReLU output.

    ``mismatches`` counts elements whose level differs (``|diff| > Vthr / 2``): in float32 a
    near-tie can flip one level; in float64 it should be 0.
    """

    name: str
    max_abs_diff: float
    mismatches: int
    numel: int


@dataclass
class EquivalenceReport:
    """Result of :func:`check_equivalence`. ``equivalent`` holds when every sample reached
    equilibrium, no neuron level differs, the output's relative difference is within
    ``rtol`` and the argmax agrees on every sample. For a network with several outputs
    the differences are the largest over them (each relative to its own largest value)
    and a sample agrees when every output's argmax does. ``operators``: each operation's
    kind in the SNN (spiking, linear, accumulating), by the QANN's names."""

    layers: list[LayerReport]
    output_max_abs_diff: float
    output_rel_diff: float
    agreement: float
    t_eq: list[int]
    reached_equilibrium: bool
    rtol: float
    dtype: str
    operators: dict[str, str] = field(default_factory=dict)
    equivalent: bool = field(init=False)

    def __post_init__(self):
        self.equivalent = (
            self.reached_equilibrium
            and all(layer.mismatches == 0 for layer in self.layers)
            and self.output_rel_diff <= self.rtol
            and self.agreement == 1.0
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        rows = [f"{'layer':<32} {'max |SNN-QANN|':>15} {'mismatched':>12}"]
        rows += [
            f"{layer.name:<32} {layer.max_abs_diff:>15.3e} {layer.mismatches:>5}/{layer.numel:<6}"
            for layer in self.layers
        ]
        t_eq = [t for t in self.t_eq if t >= 0]
        rows += [
            f"output: max abs diff {self.output_max_abs_diff:.3e}, relative "
            f"{self.output_rel_diff:.3e} (rtol {self.rtol:g}, {self.dtype})",
            f"argmax agreement {self.agreement:.2%}; equilibrium reached by "
            f"{len(t_eq)}/{len(self.t_eq)} samples, T_eq max {max(t_eq, default=-1)}",
        ]
        if self.operators:
            kinds = Counter(self.operators.values())
            rows.append("operators: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        rows.append(f"equivalent: {self.equivalent}")
        return "\n".join(rows)


def _default_rtol(dtype: torch.dtype) -> float:
    return 1e-9 if dtype == torch.float64 else 1e-4


@torch.no_grad()
def check_equivalence(
    qann: nn.Module,
    snn: SpikingNetwork,
    x: Tensor,
    max_timesteps: int = MAX_TIMESTEPS,
    rtol: float | None = None,
    progress: bool = False,
) -> EquivalenceReport:
    """Run the QANN once and the SNN to equilibrium on ``x`` and compare them.

    Per neuron layer: the largest ``|SNN accumulated output - QANN Q-ReLU output|`` and the
    number of elements at a different level. Final output: max absolute and relative
    (to ``max |QANN output|``) difference and the argmax agreement over the batch.

    Args:
        x: ``[B, ...]`` inputs, in the SNN's dtype (compare in float64 for a proof).
        max_timesteps: simulation budget to reach equilibrium.
        rtol: output tolerance; default 1e-9 for float64, 1e-4 otherwise.
        progress: show a bar of the steps simulated (it ends early at equilibrium).
    """
    neurons = snn.neurons
    expected, activations = run_with_activations(qann, x, neurons)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"equivalence proof on {len(x)} inputs", total=None)

        def step(t: int, _) -> None:
            bar.update(task, completed=t, description=f"equivalence proof: T={t}")

        sim = snn.run(
            x, max_timesteps, stop_at_equilibrium=True, on_step=step if progress else None
        )
    steps = sim.timesteps - snn.overhead  # the steps whose output counted
    got = [snn.release.estimate(leaf, steps) for leaf in tree_flatten(sim.final)[0]]
    layers = []
    for name, neuron in neurons.items():
        diff = (snn.release.estimate(neuron.accumulated(), steps) - activations[name]).abs()
        layers.append(
            LayerReport(
                name=name,
                max_abs_diff=float(diff.max()),
                mismatches=int((diff > 0.5 * neuron.threshold).sum()),
                numel=diff.numel(),
            )
        )
    out_diff = rel_diff = 0.0
    agree = None
    for g, e in zip(got, tree_flatten(expected)[0], strict=True):
        diff = float((g - e).abs().max()) if e.numel() else 0.0
        scale = float(e.abs().max().clamp_min(torch.finfo(e.dtype).tiny)) if e.numel() else 1.0
        out_diff, rel_diff = max(out_diff, diff), max(rel_diff, diff / scale)
        same = (g.argmax(-1) == e.argmax(-1)).reshape(len(x), -1).all(1)
        agree = same if agree is None else agree & same
    agreement = float(agree.double().mean())
    return EquivalenceReport(
        layers=layers,
        output_max_abs_diff=out_diff,
        output_rel_diff=rel_diff,
        agreement=agreement,
        t_eq=sim.t_eq.tolist(),
        reached_equilibrium=bool(sim.at_equilibrium.all()),
        rtol=_default_rtol(x.dtype) if rtol is None else rtol,
        dtype=str(x.dtype).replace("torch.", ""),
        operators=dict(snn.operators),
    )
