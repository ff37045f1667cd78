"""Float32 vs float64: how often does the SNN's argmax agree with its QANN on real data?

Trains the small CNN on MNIST-5k (4,000 train images), quantizes it (Q-ReLU, LSQ,
a short QAT), converts it, and compares SNN at equilibrium with the QANN on the 1,000
test images in float32 and in float64. Run: ``.venv/bin/python bench/float32_agreement.py``.
Writes ``bench/results/float32_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import RESULTS, write_results
from torch.utils.data import DataLoader

from spikezip.data import load_mnist5k
from spikezip.models import small_cnn
from spikezip.quant import to_qann
from spikezip.snn import check_equivalence, to_snn


def fit(model, loader, epochs: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return float((model(x).argmax(-1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "float32_agreement.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    train, test = load_mnist5k()
    loader = DataLoader(train, batch_size=64, shuffle=True)
    x_test, y_test = test.tensors
    start = time.perf_counter()
    ann = small_cnn()
    fit(ann, loader, args.epochs, 1e-3)
    qann = to_qann(ann, args.levels)
    fit(qann, loader, args.qat_epochs, 3e-4)
    qann.eval()
    result = {
        "levels": args.levels,
        "ann_accuracy": accuracy(ann, x_test, y_test),
        "qann_accuracy": accuracy(qann, x_test, y_test),
        "train_seconds": time.perf_counter() - start,
    }
    for dtype in (torch.float32, torch.float64):
        q = qann.to(dtype)
        report = check_equivalence(q, to_snn(q).to(dtype), x_test.to(dtype), max_timesteps=500)
        key = str(dtype).replace("torch.", "")
        result[key] = {
            "argmax_agreement": report.agreement,
            "output_rel_diff": report.output_rel_diff,
            "mismatched_neurons": sum(layer.mismatches for layer in report.layers),
            "neurons": sum(layer.numel for layer in report.layers),
            "t_eq_max": max(report.t_eq),
            "equivalent": report.equivalent,
        }
        print(f"--- {key}\n{report}")
    print(json.dumps(result, indent=2))
    write_results(result, args.out)


if __name__ == "__main__":
    main()
