"""Benchmark: one PET training step over one plain QAT step (same batch, same network).

PET step: teacher forward (no grad, batch-norm folded) + each path's forward and backward
in turn through the ensemble loss + optimizer step, as ``PETModule`` trains. QAT step: one
quantized path, cross-entropy, backward, optimizer step. Target (issue 3): <= 3.5x for
three paths. Run: ``.venv/bin/python bench/pet_step.py``; writes
``bench/results/pet_step.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import RESULTS, wall, write_results

from spikezip.lit.pet_module import fuse_for_inference
from spikezip.models import build_model
from spikezip.pet import EnsembleLoss, PETConfig, backward_paths, to_pet
from spikezip.quant import to_qann

CASES = {
    "small": ({"name": "small", "num_classes": 10}, (1, 28, 28)),
    "resnet20": ({"name": "resnet20", "num_classes": 100}, (3, 32, 32)),
    "vgg16": ({"name": "vgg16", "num_classes": 100, "variant": "cifar", "width": 0.5}, (3, 32, 32)),
}


def bench(case: str, batch: int, levels: list[int], repeats: int) -> dict:
    arch, shape = CASES[case]
    torch.manual_seed(0)
    x, y = torch.randn(batch, *shape), torch.randint(0, arch["num_classes"], (batch,))
    teacher = build_model(**arch).eval()
    fused_teacher = fuse_for_inference(teacher)  # what PETModule's training step runs
    pet = to_pet(to_qann(teacher, levels[0]), levels).train()
    qat = to_pet(to_qann(teacher, levels[0]), levels[:1]).train()
    loss_fn = EnsembleLoss(PETConfig(levels=levels))
    pet_opt = torch.optim.SGD(pet.parameters(), lr=1e-3, momentum=0.9)
    qat_opt = torch.optim.SGD(qat.parameters(), lr=1e-3, momentum=0.9)

    def pet_step():
        with torch.no_grad():
            teacher_logits = fused_teacher(x)
        pet_opt.zero_grad()
        backward_paths(pet, loss_fn, x, y, teacher_logits)  # as PETModule.training_step
        pet_opt.step()

    def qat_step():
        qat_opt.zero_grad()
        F.cross_entropy(qat(x), y).backward()
        qat_opt.step()

    pet_step(), qat_step()  # warm-up and LSQ scale init
    pet_times, qat_times = [], []
    for _ in range(repeats):  # interleaved: drift in machine speed hits both alike
        qat_times.append(wall(qat_step))
        pet_times.append(wall(pet_step))
    pet_s, qat_s = statistics.median(pet_times), statistics.median(qat_times)
    return {
        "model": case,
        "batch": batch,
        "levels": levels,
        "qat_step_s": qat_s,
        "pet_step_s": pet_s,
        "ratio": pet_s / qat_s,
        "ratio_best": min(pet_times) / min(qat_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 4, 2])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--out", type=Path, default=RESULTS / "pet_step.json")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, levels {args.levels}"
    )
    print(f"{'model':<10}{'QAT step':>10}{'PET step':>10}{'ratio':>7}{'best':>6}")
    rows = []
    for case in args.models:
        r = bench(case, args.batch, args.levels, args.repeats)
        rows.append(r)
        print(
            f"{case:<10}{r['qat_step_s'] * 1e3:>8.1f}ms{r['pet_step_s'] * 1e3:>8.1f}ms"
            f"{r['ratio']:>7.2f}{r['ratio_best']:>6.2f}"
        )
    write_results({"torch": torch.__version__, "results": rows}, args.out)


if __name__ == "__main__":
    main()
