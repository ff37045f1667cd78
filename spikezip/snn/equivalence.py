"""Layer-by-layer evidence that an SNN at equilibrium equals the QANN it came from."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
from rich.progress import Progress
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from spikezip.errors import SpikeZIPError
from spikezip.snn.network import MAX_TIMESTEPS, SpikingNetwork
from spikezip.snn.neuron import IntegerSTBIF
from spikezip.snn.reference import run_with_activations


class NotEquivalentError(SpikeZIPError, RuntimeError):
    """The converted SNN does not reproduce its QANN; no SNN file or report was written."""


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
    # An integer SNN's (else None): every level and output identical, and what was compared.
    bit_exact: bool | None = None
    levels_compared: int | None = None
    outputs_compared: int | None = None
    outputs_differing: int | None = None
    equivalent: bool = field(init=False)

    def __post_init__(self):
        self.equivalent = (
            self.reached_equilibrium
            and all(layer.mismatches == 0 for layer in self.layers)
            and self.output_rel_diff <= self.rtol
            and self.agreement == 1.0
            and self.bit_exact is not False
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
        if self.bit_exact is not None:
            rows.append(
                f"bit-exact: {self.bit_exact} ({self.levels_compared} neuron levels and "
                f"{self.outputs_compared} outputs compared, {self.outputs_differing} outputs "
                "differ)"
            )
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
                mismatches=int((diff > 0.5 * neuron.level_unit).sum()),
                numel=diff.numel(),
            )
        )
    out_diff = rel_diff = 0.0
    agree = None
    outputs = differing = 0
    for g, e in zip(got, tree_flatten(expected)[0], strict=True):
        outputs += e.numel()
        differing += int((g != e).sum())
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
        **_bit_exactness(neurons, layers, outputs, differing),
    )


def _bit_exactness(neurons: dict, layers: list[LayerReport], outputs: int, differing: int) -> dict:
    """For an integer SNN (its neurons :class:`IntegerSTBIF`): whether every neuron level
    and every output equals the integer QANN's, and how many were compared."""
    if not neurons or not all(isinstance(n, IntegerSTBIF) for n in neurons.values()):
        return {}
    exact = differing == 0 and all(layer.max_abs_diff == 0 for layer in layers)
    return {
        "bit_exact": exact,
        "levels_compared": sum(layer.numel for layer in layers),
        "outputs_compared": outputs,
        "outputs_differing": differing,
    }


@torch.no_grad()
def prove_bit_exact(
    qann: nn.Module,
    snn: SpikingNetwork,
    batches,
    max_timesteps: int = MAX_TIMESTEPS,
    device: torch.device | str | None = None,
    reduce_sum=None,
    progress: bool = False,
) -> dict:
    """:func:`check_equivalence` of an integer SNN on every batch (the whole validation
    set): the samples, neuron levels and outputs compared, those that differ, and
    ``bit_exact`` (every level and every output identical, every sample settled). With
    ``reduce_sum`` the counts are added over processes."""
    totals = torch.zeros(6, dtype=torch.float64)  # samples, levels, differing, outputs, ...
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("bit-exactness over the validation set", total=None)
        for x, _ in batches:
            x = x.to(device=device, dtype=torch.float64)
            report = check_equivalence(qann, snn, x, max_timesteps)
            if report.bit_exact is None:
                raise ValueError("prove_bit_exact needs an integer SNN (pet.weight_bits)")
            mismatched = sum(layer.mismatches for layer in report.layers)
            settled = sum(1 for t in report.t_eq if t >= 0)
            totals += torch.tensor(
                [len(x), report.levels_compared, mismatched, report.outputs_compared,
                 report.outputs_differing, len(x) - settled],
                dtype=torch.float64,
            )  # fmt: skip
            bar.advance(task)
    if reduce_sum is not None:
        totals = reduce_sum(totals)
    samples, levels, mismatched, outputs, differing, unsettled = (int(v) for v in totals.tolist())
    return {
        "bit_exact": samples > 0 and mismatched == differing == unsettled == 0,
        "samples": samples,
        "neurons_per_sample": levels // max(samples, 1),
        "levels_compared": levels,
        "levels_differing": mismatched,
        "outputs_compared": outputs,
        "outputs_differing": differing,
        "unsettled": unsettled,
    }
