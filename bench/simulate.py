"""Benchmark: one SNN time-step vs one QANN forward, and accuracy at every T from one pass.

Target (issue 2): one SNN step <= 1.5x one QANN forward, for VGG-16 (CIFAR, batch 64)
and ResNet-20. Run: ``.venv/bin/python bench/simulate.py`` (or ``make bench``).
Writes ``bench/results/simulate.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from timing import RESULTS, wall, write_results

from spikezip.models import resnet20, vgg16
from spikezip.quant import to_qann
from spikezip.snn import to_snn

MODELS = {
    "vgg16": lambda: vgg16(num_classes=100, variant="cifar"),
    "resnet20": lambda: resnet20(num_classes=100),
    "resnet20_rcr": lambda: resnet20(num_classes=100, rcr=True),
}


def bench(name: str, batch: int, levels: int, timesteps: int, repeats: int, device: str) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 100, (batch,), device=device)
    qann = to_qann(MODELS[name](), levels).to(device)
    qann.train()
    with torch.no_grad():
        qann(x)  # LSQ scale init and realistic BN statistics
    qann.eval()
    snn = to_snn(qann)
    # A GPU runs asynchronously: a timing must wait for the work it started.
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def qann_forward():
        with torch.no_grad():
            qann(x)
        sync()

    def every_step():
        snn.run(x, timesteps, fast_forward=False)  # the raw cost of each step
        sync()

    def accuracy_curve():
        outputs = snn.run(x, timesteps).outputs  # [T, B, classes], one pass for every T
        curve = (outputs.argmax(-1) == labels).float().mean(1)
        sync()
        return curve

    qann_forward(), every_step()  # warm-up
    # Interleaved, so that drift in the machine's speed hits both sides alike.
    forward, steps, curve = [], [], []
    for _ in range(repeats):
        forward.append(min(wall(qann_forward) for _ in range(3)))
        steps.append(wall(every_step) / timesteps)
        curve.append(wall(accuracy_curve))
    fwd, step = statistics.median(forward), statistics.median(steps)
    return {
        "model": name,
        "device": device,
        "batch": batch,
        "levels": levels,
        "timesteps": timesteps,
        "qann_forward_s": fwd,
        "snn_step_s": step,
        "step_over_forward": step / fwd,
        "step_over_forward_best": min(steps) / min(forward),
        "accuracy_every_t_s": statistics.median(curve),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    parser.add_argument("--out", type=Path, default=RESULTS / "simulate.json")
    args = parser.parse_args()

    rows = []
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, {where}")
    print(
        f"{'model':<14}{'QANN fwd':>10}{'SNN step':>10}{'ratio':>7}{'best':>6}"
        f"{'acc@T=1..' + str(args.timesteps):>14}"
    )
    for name in args.models:
        r = bench(name, args.batch, args.levels, args.timesteps, args.repeats, args.device)
        rows.append(r)
        print(
            f"{name:<14}{r['qann_forward_s'] * 1e3:>8.1f}ms{r['snn_step_s'] * 1e3:>8.1f}ms"
            f"{r['step_over_forward']:>7.2f}{r['step_over_forward_best']:>6.2f}"
            f"{r['accuracy_every_t_s']:>13.2f}s"
        )
    write_results({"torch": torch.__version__, "results": rows}, args.out)


if __name__ == "__main__":
    main()
