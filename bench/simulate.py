"""Benchmark: one SNN time-step vs one QANN forward, eager and compiled, and peak memory.

For the demo CNN (MNIST size), VGG-16 and ResNet-20 (CIFAR size) and torchvision's
ResNet-18 (ImageNet's layout at half its resolution, 112 x 112, so that the whole run
takes minutes on a 2-core CPU), at batch 32 and 64: the cost of one step of the SNN, as a
ratio to one forward of its QANN with batch-norm folded into the convolutions (as the SNN
has it; both eager), for the ``eager`` and ``compiled`` backends; and the peak memory of
a T = 32 simulation that keeps every step's output (the neuron state, the outputs and
every temporary, from a reset network), beside the QANN forward's. Goal on the
CPU: one compiled step <= 1.05x one forward. Networks are randomly initialised (a step
costs the same whatever the weights: every layer is computed densely); their Q-ReLU
scales come from one training-mode forward (LSQ's initialisation).

Run: ``.venv/bin/python bench/simulate.py`` (or ``make bench``); ``--device cuda`` on a GPU.
Writes ``bench/results/simulate.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torchvision
from timing import RESULTS, peak_bytes, wall, write_results

from spikezip.lit.pet_module import fuse_for_inference
from spikezip.models import resnet20, small_cnn, vgg16
from spikezip.quant import to_qann
from spikezip.snn import to_snn

# name -> (builder, one input's shape)
MODELS = {
    "demo": (lambda: small_cnn(), (1, 28, 28)),
    "vgg16": (lambda: vgg16(num_classes=100, variant="cifar"), (3, 32, 32)),
    "resnet20": (lambda: resnet20(num_classes=100), (3, 32, 32)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=1000), (3, 112, 112)),
}
BACKENDS = ("eager", "compiled")


def build(name: str, levels: int, device: str):
    """``(folded QANN, SNN, input shape)`` of a randomly initialised model."""
    torch.manual_seed(0)
    make, shape = MODELS[name]
    qann = to_qann(make(), levels).to(device)
    qann.train()
    with torch.no_grad():
        qann(torch.randn(16, *shape, device=device))  # LSQ scale init, BN statistics
    qann.eval()
    return fuse_for_inference(qann), to_snn(qann), shape


def bench(name: str, args) -> list[dict]:
    folded, snn, shape = build(name, args.levels, args.device)
    # A GPU runs asynchronously: a timing must wait for the work it started.
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rows = []
    for batch in args.batch:
        x = torch.randn(batch, *shape, device=args.device)

        def forward(x=x):
            with torch.no_grad():
                folded(x)
            sync()

        def steps(x=x):
            snn.run(x, args.timesteps, fast_forward=False)  # the raw cost of every step
            sync()

        compile_s = {}
        for backend in args.backends:  # warm-up; the compiled backend compiles here
            snn.use_backend(backend)
            compile_s[backend] = wall(steps)
        forward()
        # Interleaved, so that drift in the machine's speed hits every side alike.
        fwd, step = [], {b: [] for b in args.backends}
        for _ in range(args.repeats):
            fwd.append(min(wall(forward) for _ in range(3)))
            for backend in args.backends:
                snn.use_backend(backend)
                step[backend].append(wall(steps) / args.timesteps)
        f = statistics.median(fwd)
        row = {"model": name, "batch": batch, "qann_forward_s": f}
        for backend in args.backends:
            s = statistics.median(step[backend])
            row[f"{backend}_step_s"] = s
            row[f"{backend}_ratio"] = s / f
            row[f"{backend}_ratio_best"] = min(step[backend]) / min(fwd)
            row[f"{backend}_first_run_s"] = compile_s[backend]
        if batch == max(args.batch):
            row["qann_forward_peak_mb"] = peak_bytes(forward, args.device) / 2**20
            for backend in args.backends:
                snn.use_backend(backend)
                snn.reset()  # the state a run leaves behind is part of the next one's peak
                run = lambda x=x: snn.run(x, 32, fast_forward=False)  # noqa: E731
                row[f"{backend}_t32_peak_mb"] = peak_bytes(run, args.device) / 2**20
        rows.append(row)
        ratios = "  ".join(
            f"{b} {row[f'{b}_step_s'] * 1e3:8.1f} ms {row[f'{b}_ratio']:5.2f}x"
            for b in args.backends
        )
        memory = "  ".join(
            f"{k.removesuffix('_peak_mb')} {v:.0f} MB" for k, v in row.items() if k.endswith("_mb")
        )
        print(f"{name:<9}{batch:>4}  fwd {f * 1e3:8.1f} ms  {ratios}  {memory}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=8, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    parser.add_argument("--out", type=Path, default=RESULTS / "simulate.json")
    args = parser.parse_args()

    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, {where}")
    rows = [row for name in args.models for row in bench(name, args)]
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    write_results(
        {"torch": torch.__version__, "device": where, **settings, "results": rows}, args.out
    )


if __name__ == "__main__":
    main()
