"""Does the integer input release cost accuracy before equilibrium?

An integer SNN (``pet.weight_bits``) releases its input and biases in integer shares,
``floor(t X / T_off) - floor((t - 1) X / T_off)``. Rounding instead of flooring is as
exact (the shares still sum to X, so the equilibrium is the same); this measures an
integer SNN's accuracy at T = 1..8 with both rules, to see whether the rule explains an
integer network's lower accuracy at small T.

Run: ``.venv/bin/python bench/integer_shares.py RUN`` (a run directory of
``train.py pet.weight_bits=...``). Prints both curves; writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from spikezip.artifacts import load_qann, load_snn
from spikezip.data import build_datasets
from spikezip.snn import measure_snn
from spikezip.snn.encoding import Release
from spikezip.tasks import Classification


def rounded(self: Release, total: torch.Tensor, t: int) -> torch.Tensor:
    """The share of step ``t`` with rounding: ``round(t X / d) - round((t - 1) X / d)``."""
    d = self.divisor
    if not self.integer or d == 1:
        return total / d
    return torch.floor(total * t / d + 0.5) - torch.floor(total * (t - 1) / d + 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--timesteps", type=int, default=8)
    args = parser.parse_args()
    snn, qann, _ = load_snn(args.run / "snn.pt")
    _, meta = load_qann(args.run / "qann.ckpt")
    _, val, info = build_datasets(**meta["data"], augment=False)
    loader = DataLoader(val, 500)

    def curve() -> list[float]:
        totals = measure_snn(snn, qann, loader, timesteps=args.timesteps, max_timesteps=256,
                             task=Classification(info.num_classes), progress=False)  # fmt: skip
        return [round(100 * v, 1) for v in totals.curve().values]

    print(f"{args.run}: accuracy (%) at T = 1..{args.timesteps}")
    print(f"  floor shares (SpikeZIP's)  {curve()}")
    floor = Release.portion
    Release.portion = rounded
    try:
        print(f"  rounded shares             {curve()}")
    finally:
        Release.portion = floor


if __name__ == "__main__":
    main()
