"""Figures people look at, written as PNG next to the CSV they came from."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def atomic_write(path: Path, write) -> Path:
    """Write a file through ``write(tmp_path)`` then rename, so no half-written file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_accuracy_curve(
    accuracy: Sequence[float],
    out_dir: Path,
    qann_accuracy: float | None = None,
    title: str = "SNN accuracy vs time-step",
    stem: str = "acc_vs_timestep",
) -> tuple[Path, Path]:
    """``acc_vs_timestep.csv`` (columns ``timestep, accuracy``) and its PNG plot."""
    out_dir = Path(out_dir)

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["timestep", "accuracy"])
            writer.writerows((t, f"{acc:.6f}") for t, acc in enumerate(accuracy, 1))

    def draw(ax) -> None:
        steps = range(1, len(accuracy) + 1)
        ax.plot(steps, [100 * a for a in accuracy], marker="o", ms=3, label="SNN")
        if qann_accuracy is not None:
            ax.axhline(100 * qann_accuracy, color="gray", ls="--", label="QANN")
        ax.set(xlabel="time-step T", ylabel="accuracy (%)", title=title, ylim=(0, 100))
        ax.legend(loc="lower right")

    return atomic_write(out_dir / f"{stem}.csv", write_csv), _figure(draw, out_dir / f"{stem}.png")


def _figure(write_axes, path: Path) -> Path:
    """Draw with ``write_axes(ax)`` and save a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def write(tmp: Path) -> None:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        write_axes(ax)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        plt.close(fig)

    return atomic_write(path, write)


def write_t_eq_histogram(t_eq: Sequence[int], path: Path) -> Path:
    """Histogram of per-sample equilibrium steps (unsettled samples, -1, left out)."""
    settled = [t for t in t_eq if t >= 0]

    def draw(ax):
        if settled:
            ax.hist(settled, bins=range(min(settled), max(settled) + 2), align="left", rwidth=0.8)
        unsettled = len(t_eq) - len(settled)
        note = f" ({unsettled} never settled)" if unsettled else ""
        ax.set(xlabel="T_eq (time-steps to equilibrium)", ylabel="samples", title=f"T_eq{note}")

    return _figure(draw, Path(path))


def write_energy_plot(energy: dict, path: Path) -> Path:
    """SNN energy per inference vs T, with the ANN's as a line."""

    def draw(ax):
        steps = range(1, len(energy["snn_joules"]) + 1)
        ax.plot(steps, [1e6 * j for j in energy["snn_joules"]], marker="o", ms=3, label="SNN")
        ax.axhline(1e6 * energy["ann_joules"], color="gray", ls="--", label="ANN")
        ax.set(xlabel="time-step T", ylabel="energy per inference (µJ)", title="Energy vs T")
        ax.legend()

    return _figure(draw, Path(path))


def write_feature_maps(distances: dict[str, Sequence[float]], out_dir: Path) -> tuple[Path, Path]:
    """``feature_maps.csv`` (T x layer L1 distances) and its plot (log scale)."""
    out_dir = Path(out_dir)
    names = list(distances)
    steps = len(next(iter(distances.values()), []))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["timestep", *names])
            for t in range(steps):
                writer.writerow([t + 1, *(f"{distances[n][t]:.6g}" for n in names)])

    def draw(ax):
        for name in names:
            ax.plot(range(1, steps + 1), [max(d, 1e-12) for d in distances[name]], label=name)
        ax.set_yscale("log")
        ax.set(xlabel="time-step T", ylabel="L1 distance SNN vs QANN", title="Feature maps")
        if len(names) <= 12:
            ax.legend(fontsize=6)

    return (
        atomic_write(out_dir / "feature_maps.csv", write_csv),
        _figure(draw, out_dir / "feature_maps.png"),
    )


def write_json(data: dict, path: Path) -> Path:
    import json

    return atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
