"""A real short run on MNIST-5k: PET at [8, 4, 2] against plain QAT at [8], same budget.

Runs the real pipeline (``spikezip.lit.pipeline.train``, what ``train.py`` runs) twice:
SpikeZIP-P (``variant=p``) trains the full-precision teacher and fine-tunes with PET;
SpikeZIP-N (``variant=n``, plain quantization-aware training) starts from that same
teacher (``teacher=checkpoint``) with the same epochs and optimizer. Both distil from the
teacher, and each major path's SNN is measured on the 1,000 test images at every
time-step. Run: ``.venv/bin/python bench/pet_mnist.py``; writes
``bench/results/pet_mnist.json`` and the two run directories next to it.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from timing import RESULTS, write_results

from spikezip.config import register_configs
from spikezip.lit.pipeline import train

CONF = Path(__file__).resolve().parents[1] / "conf"


def _run(run_dir: Path, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resumed one
    return train(cfg, run_dir)


def _path_accuracies(run_dir: Path) -> dict[str, float]:
    """Each path's validation accuracy after the last PET epoch (logs/pet/metrics.csv)."""
    with open(run_dir / "logs" / "pet" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/acc")]
    last = rows[-1]
    return {
        k.removeprefix("val/acc_"): float(v) for k, v in last.items() if k.startswith("val/acc_")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    register_configs()
    common = [
        f"seed={args.seed}",
        f"data.seed={args.seed}",
        f"pet.epochs={args.epochs}",
        f"snn.timesteps={args.timesteps}",
        f"snn.every_n_epochs={args.epochs}",  # the callback once, at the end
        "trainer.enable_progress_bar=false",
        "logger=csv",
    ]
    start = time.perf_counter()
    pet_dir, qat_dir = args.out / "pet_mnist_pet", args.out / "pet_mnist_qat"
    runs = {
        "pet": (pet_dir, ["variant=p", f"teacher.epochs={args.teacher_epochs}"]),
        "qat": (
            qat_dir,
            ["variant=n", "teacher=checkpoint", f"teacher.checkpoint={pet_dir / 'teacher.ckpt'}"],
        ),
    }
    summary: dict = {}
    for name, (run_dir, overrides) in runs.items():
        result = _run(run_dir, common + overrides)
        summary[name] = {
            "overrides": overrides,
            "qann_accuracy_per_path": _path_accuracies(run_dir),
            "snn_accuracy": {
                f"T={t}": result["snn_accuracy"][t - 1]
                for t in (1, 2, 4, 8, 16)
                if t <= args.timesteps
            },
            "qann_accuracy": result["qann_accuracy"],
            "t_eq_mean": result["t_eq_mean"],
            "t_eq_max": result["t_eq_max"],
            "agreement": result["agreement"],
        }
    with open(pet_dir / "logs" / "teacher" / "metrics.csv") as f:
        teacher = [r for r in csv.DictReader(f) if r.get("teacher/val/acc")]
    summary["teacher_accuracy"] = float(teacher[-1]["teacher/val/acc"])
    summary["seconds"] = time.perf_counter() - start
    write_results(summary, args.out / "pet_mnist.json")
    for name in ("pet", "qat"):
        s = summary[name]
        print(name, s["qann_accuracy_per_path"], s["snn_accuracy"], s["t_eq_mean"], s["agreement"])


if __name__ == "__main__":
    main()
