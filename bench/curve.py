"""Benchmark: the demo SNN's whole per-T curve over its 1,000 test images, against its QANN.

Evaluating an SNN at T = 1..32 costs, per sample, the steps until it settles (``T_eq``)
plus the one quiet step that shows it has: the goal is a ratio to evaluating the QANN on
the same images of at most 1.1 x (mean T_eq + 1). Measured as the pipeline measures it
(:func:`spikezip.snn.measure_snn`: the per-T accuracy, agreement and T_eq, which also runs
the QANN once per batch for its reference output), with and without the energy meter, for
each backend, with settled samples leaving their batch and (``drop_settled=False``)
without, as the simulator did before.

The SNN is the demo's network trained briefly here (the small CNN, 3 epochs, then 2 epochs
of 8-level QAT; about 15 s) or, with ``--qann``, a ``qann.ckpt`` written by ``make demo``.
Run: ``.venv/bin/python bench/curve.py``. Writes ``bench/results/curve.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from float32_agreement import fit
from timing import RESULTS, wall, write_results
from torch.utils.data import DataLoader

from spikezip.artifacts import load_qann
from spikezip.data import load_mnist5k
from spikezip.lit.pet_module import fuse_for_inference
from spikezip.models import small_cnn
from spikezip.quant import to_qann
from spikezip.snn import measure_snn, to_snn
from spikezip.snn.energy import EnergyMeter
from spikezip.tasks import Classification


def demo_qann(path: Path | None, levels: int):
    if path is not None:
        return load_qann(path)[0].eval()
    torch.manual_seed(0)
    train, _ = load_mnist5k()
    loader = DataLoader(train, batch_size=64, shuffle=True)
    ann = small_cnn()
    fit(ann, loader, 3, 1e-3)
    qann = to_qann(ann, levels)
    fit(qann, loader, 2, 3e-4)
    return qann.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qann", type=Path, help="a qann.ckpt of make demo (default: train one)")
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=250, help="the demo's eval_batch_size")
    parser.add_argument("--backends", nargs="+", default=["eager", "compiled"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "curve.json")
    args = parser.parse_args()

    qann = demo_qann(args.qann, args.levels)
    _, test = load_mnist5k()
    x, y = test.tensors
    batches = list(zip(x.split(args.batch), y.split(args.batch), strict=True))
    folded = fuse_for_inference(qann)
    task = Classification(10)
    snn = to_snn(qann)

    def qann_eval():
        with torch.no_grad():
            for xb, yb in batches:
                (folded(xb).argmax(-1) == yb).sum()

    def curve(drop: bool, energy: bool):
        meters = [EnergyMeter(snn, tuple(x.shape[1:]), args.timesteps)] if energy else []
        return measure_snn(
            snn,
            qann,
            batches,
            timesteps=args.timesteps,
            task=task,
            meters=meters,
            progress=False,
            drop_settled=drop,
        )

    variants = [
        (backend, drop, energy)
        for backend in args.backends
        for drop in (True, False)
        for energy in (False, True)
    ]
    for backend, drop, energy in variants:  # warm-up (and compilation)
        snn.use_backend(backend)
        totals = curve(drop, energy)
    t_eq = totals.t_eq_mean
    goal = 1.1 * (t_eq + 1)
    base, times = [], {v: [] for v in variants}
    for _ in range(args.repeats):  # interleaved
        base.append(wall(qann_eval))
        for v in variants:
            snn.use_backend(v[0])
            times[v].append(wall(lambda v=v: curve(*v[1:])))
    qann_s = statistics.median(base)
    print(
        f"{len(x)} images, batch {args.batch}, T = 1..{args.timesteps}: QANN {qann_s:.3f} s; "
        f"mean T_eq {t_eq:.2f}, goal <= 1.1 x (T_eq + 1) = {goal:.2f}"
    )
    rows = []
    for (backend, drop, energy), runs in times.items():
        s = statistics.median(runs)
        rows.append(
            {
                "backend": backend,
                "drop_settled": drop,
                "energy_meter": energy,
                "seconds": s,
                "ratio": s / qann_s,
            }
        )
        print(
            f"  {backend:<9} drop_settled={drop!s:<5} energy={energy!s:<5} "
            f"{s:6.2f} s  {s / qann_s:5.2f}x the QANN"
        )
    write_results(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "images": len(x),
            "batch": args.batch,
            "timesteps": args.timesteps,
            "qann": str(args.qann) if args.qann else "trained by bench/curve.py",
            "qann_accuracy": totals.qann_accuracy,
            "snn_accuracy_per_t": totals.snn_accuracy,
            "t_eq_mean": t_eq,
            "t_eq_max": totals.t_eq_max,
            "goal_ratio": goal,
            "qann_eval_s": qann_s,
            "results": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
