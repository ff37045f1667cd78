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

    def write_png(tmp: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        steps = range(1, len(accuracy) + 1)
        ax.plot(steps, [100 * a for a in accuracy], marker="o", ms=3, label="SNN")
        if qann_accuracy is not None:
            ax.axhline(100 * qann_accuracy, color="gray", ls="--", label="QANN")
        ax.set(xlabel="time-step T", ylabel="accuracy (%)", title=title, ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        plt.close(fig)

    return (
        atomic_write(out_dir / f"{stem}.csv", write_csv),
        atomic_write(out_dir / f"{stem}.png", write_png),
    )
