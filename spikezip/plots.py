"""Figures people look at, as PNG files (the numbers behind them are written by
:mod:`spikezip.artifacts`, next to them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spikezip.io import atomic_write

if TYPE_CHECKING:
    from spikezip.snn.measure import Curve


def _figure(draw, path: str | Path) -> Path:
    """Draw with ``draw(ax)`` and save a PNG atomically."""
    # matplotlib (slow to import) loads only when a figure is drawn.
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib (slow to import) loads only when a figure is drawn.
    import matplotlib.pyplot as plt

    def write(tmp: Path) -> None:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        draw(ax)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        plt.close(fig)

    return atomic_write(path, write)


def plot_curve(
    timesteps: Sequence[int],
    values: Sequence[float],
    path: str | Path,
    reference: float | None = None,
    name: str = "accuracy",
) -> Path:
    """A score (``values`` in [0, 1] at ``timesteps``) against T, the QANN's score
    ``reference`` as a dashed line."""

    def draw(ax) -> None:
        ax.plot(timesteps, [100 * v for v in values], marker="o", ms=3, label="SNN")
        if reference is not None:
            ax.axhline(100 * reference, color="gray", ls="--", label="QANN")
        if len(timesteps) > 1 and timesteps[-1] / timesteps[0] > 8 and len(timesteps) < 12:
            ax.set_xscale("log", base=2)  # a few powers of two (detection's mAP)
        title = f"SNN {name} vs time-step"
        ax.set(xlabel="time-step T", ylabel=f"{name} (%)", title=title, ylim=(0, 100))
        ax.legend(loc="lower right")

    return _figure(draw, path)


def plot_t_eq_histogram(counts: Mapping[int, int], unsettled: int, path: str | Path) -> Path:
    """Samples per equilibrium step ``T_eq`` (``counts``); ``unsettled`` never got there."""
    steps = sorted(t for t, n in counts.items() if n)

    def draw(ax):
        if steps:
            ax.bar(steps, [counts[t] for t in steps], width=0.8)
        note = f" ({unsettled} never settled)" if unsettled else ""
        ax.set(xlabel="T_eq (time-steps to equilibrium)", ylabel="samples", title=f"T_eq{note}")

    return _figure(draw, path)


def plot_energy(energy: dict, path: str | Path) -> Path:
    """SNN energy per inference vs T, with the ANN's as a line."""

    def draw(ax):
        steps = range(1, len(energy["snn_joules"]) + 1)
        ax.plot(steps, [1e6 * j for j in energy["snn_joules"]], marker="o", ms=3, label="SNN")
        ax.axhline(1e6 * energy["ann_joules"], color="gray", ls="--", label="ANN")
        ax.set(xlabel="time-step T", ylabel="energy per inference (µJ)", title="Energy vs T")
        ax.legend()

    return _figure(draw, path)


def plot_feature_maps(distances: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Per neuron layer, the L1 distance to the QANN against T (log scale)."""

    def draw(ax):
        for name, values in distances.items():
            steps = range(1, len(values) + 1)
            ax.plot(steps, [max(d, 1e-12) for d in values], label=name)
        ax.set_yscale("log")
        ax.set(xlabel="time-step T", ylabel="L1 distance SNN vs QANN", title="Feature maps")
        if len(distances) <= 12:
            ax.legend(fontsize=6)

    return _figure(draw, path)


def plot_runs_accuracy(runs: Sequence[tuple[str, Curve, float | None]], path: str | Path) -> Path:
    """Every run's SNN score (accuracy, or a detector's mAP) against T (log scale) and its
    ANN's score (dashed, in the run's colour); ``runs`` are ``(label, curve, ANN score)``."""
    name = runs[0][1].name

    def draw(ax):
        for i, (label, curve, ann) in enumerate(runs):
            colour = f"C{i % 10}"
            ax.plot(
                curve.timesteps,
                [100 * v for v in curve.values],
                color=colour,
                marker="o",
                ms=2,
                label=label,
            )
            if ann is not None:
                ax.axhline(100 * ann, color=colour, ls="--", lw=0.8)
        longest = max(curve.timesteps[-1] for _, curve, _ in runs)
        ax.set_xscale("log", base=2)
        ticks = [t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if t <= longest]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set(xlabel="time-step T", ylabel=f"{name} (%)", title=f"SNN {name} vs T (ANN dashed)")
        ax.legend(fontsize=7, loc="lower right")

    return _figure(draw, path)


def plot_accuracy_vs_energy(
    runs: Sequence[tuple[str, Curve, float | None, Sequence[float], float]], path: str | Path
) -> Path:
    """Every run's score against its energy per inference at each T measured (log scale),
    its ANN as one marker; ``runs`` are ``(label, curve, ANN score, SNN joules at T = 1,
    2, ..., ANN joules)``."""
    name = runs[0][1].name

    def draw(ax):
        for i, (label, curve, ann, snn_joules, ann_joules) in enumerate(runs):
            colour = f"C{i % 10}"
            energy = [1e6 * snn_joules[t - 1] for t in curve.timesteps]
            ax.plot(
                energy, [100 * v for v in curve.values], color=colour, marker="o", ms=2, label=label
            )
            if ann is not None:
                ax.plot([1e6 * ann_joules], [100 * ann], color=colour, marker="*", ms=9)
        ax.set_xscale("log")
        ax.set(
            xlabel="energy per inference (µJ)",
            ylabel=f"{name} (%)",
            title=f"{name[0].upper()}{name[1:]} vs energy (stars: the ANNs)",
        )
        ax.legend(fontsize=7, loc="lower right")

    return _figure(draw, path)


def plot_mean_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    ann: Sequence[float],
    path: str | Path,
    title: str,
) -> Path:
    """For each label, the mean SNN accuracy against T over its runs (seeds), with a band of
    ± one standard deviation; the ANNs' mean accuracy as a black dashed line."""

    def draw(ax):
        longest = 1
        for i, (label, runs) in enumerate(curves.items()):
            if not runs:
                continue
            steps = min(len(r) for r in runs)
            longest = max(longest, steps)
            values = 100 * np.array([r[:steps] for r in runs])
            mean, std = values.mean(0), values.std(0, ddof=1) if len(runs) > 1 else 0 * values[0]
            t = np.arange(1, steps + 1)
            ax.plot(t, mean, color=f"C{i}", marker="o", ms=2, label=f"{label} (n={len(runs)})")
            ax.fill_between(t, mean - std, mean + std, color=f"C{i}", alpha=0.2, lw=0)
        if ann:
            ax.axhline(100 * float(np.mean(ann)), color="black", ls="--", lw=0.8, label="ANN")
        ax.set_xscale("log", base=2)
        ticks = [t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if t <= longest]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set(xlabel="time-step T", ylabel="accuracy (%)", title=title)
        ax.legend(fontsize=7, loc="lower right")

    return _figure(draw, path)


def plot_hardware(report: dict, path: str | Path) -> Path:
    """Per neuron layer of ``hardware.json``: the membrane range measured (before firing,
    in units of the threshold) as a bar, labelled with the tracer and membrane bits and the
    spikes per neuron per inference."""
    layers = [e for e in report["layers"] if e["membrane"] is not None]

    def draw(ax):
        y = np.arange(len(layers))
        low = [e["membrane"]["min"] for e in layers]
        high = [e["membrane"]["max"] for e in layers]
        ax.barh(y, np.subtract(high, low), left=low, height=0.6, color="C0", alpha=0.7)
        ax.axvline(0, color="gray", lw=0.8)
        ax.axvline(1, color="gray", lw=0.8, ls="--")  # the threshold
        for i, e in enumerate(layers):
            tracer = f"S {e['tracer']['bits']}b" if e["tracer"] else "no tracer"
            membrane = f", V {e['membrane_bits']}b" if e["membrane_bits"] is not None else ""
            spikes = e["spikes_per_neuron"]
            note = f"{tracer}{membrane}, {spikes['positive'] + spikes['negative']:.2f} spk/n"
            ax.text(high[i], i, " " + note, va="center", fontsize=6)
        ax.set_yticks(y, [e["name"] for e in layers], fontsize=6)
        ax.invert_yaxis()
        ax.set(
            xlabel="membrane before firing (units of Vthr; dashed: Vthr)",
            title="Neuron registers per layer",
        )
        span = max(max(high, default=1) - min(low, default=0), 1e-9)
        ax.set_xlim(min(low, default=0) - 0.05 * span, max(high, default=1) + 0.45 * span)

    return _figure(draw, path)
