"""A real short run on MNIST-5k: PET at [8, 4, 2] against plain QAT at [8], same budget.

Trains the full-precision small CNN (the teacher), then fine-tunes two QANNs from it for
the same number of epochs, one with PET and one with plain quantization-aware training
(both distil from the teacher), and evaluates each major path's SNN on the 1,000 test
images at every time-step. Run: ``.venv/bin/python bench/pet_mnist.py``; writes
``bench/results/pet_mnist.json`` and the curves' CSV / PNG next to it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from spikezip.data import load_mnist5k
from spikezip.lit import PETModule, SNNConversionCallback, TeacherModule

ARCH = {"name": "small", "num_classes": 10}


def _trainer(epochs: int, callbacks=()) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    pl.seed_everything(args.seed, verbose=False)
    train, test = load_mnist5k(seed=args.seed)
    train_loader = DataLoader(train, batch_size=64, shuffle=True)
    test_loader = DataLoader(test, batch_size=250)
    start = time.perf_counter()
    teacher = TeacherModule(ARCH, optimizer={"lr": 0.05})
    trainer = _trainer(args.teacher_epochs)
    trainer.fit(teacher, train_loader, test_loader)
    summary = {"teacher_accuracy": float(trainer.callback_metrics["teacher/val/acc"])}

    for name, levels in (("pet", [8, 4, 2]), ("qat", [8])):
        pl.seed_everything(args.seed, verbose=False)
        module = PETModule(ARCH, levels=levels, optimizer={"lr": 0.01}, teacher=teacher.model)
        callback = SNNConversionCallback(
            every_n_epochs=args.epochs, timesteps=args.timesteps, max_timesteps=200,
            out_dir=args.out / f"pet_mnist_{name}",
        )  # fmt: skip
        trainer = _trainer(args.epochs, [callback])
        trainer.fit(module, train_loader, test_loader)
        result = callback.last
        summary[name] = {
            "levels": levels,
            "qann_accuracy_per_path": {
                key.removeprefix("val/acc_"): float(v)
                for key, v in trainer.callback_metrics.items()
                if key.startswith("val/acc_")
            },
            "snn_accuracy": {
                f"T={t}": result.snn_accuracy[t - 1] for t in (2, 4, 8, 16) if t <= args.timesteps
            },
            "t_eq_mean": result.t_eq_mean,
            "t_eq_max": result.t_eq_max,
            "agreement": result.agreement,
        }
    summary["seconds"] = time.perf_counter() - start
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pet_mnist.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
