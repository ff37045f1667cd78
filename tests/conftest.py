"""Shared fixtures: QANNs with realistic (non-degenerate) activations for equivalence tests."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from spikezip.quant import QReLU, to_qann

os.environ.setdefault("WANDB_MODE", "disabled")


def calibrate(qann: nn.Module, x: torch.Tensor, seed: int = 0, jitter: float = 0.3) -> nn.Module:
    """Give a QANN random but realistic statistics, in place, and return it in float64 eval.

    Batch-norm gets random gamma / beta and running statistics equal to this batch's (so
    eval activations are spread, not all zero or saturated); each Q-ReLU gets LSQ's data
    init, then a random factor in ``[1 - jitter, 1 + jitter]``.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in qann.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch -> exactly its statistics
            with torch.no_grad():
                m.weight.uniform_(0.6, 1.4, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
    qann.double().train()
    with torch.no_grad():
        qann(x.double())
    qann.eval()
    for m in qann.modules():
        if isinstance(m, QReLU):
            factor = 1 + jitter * (2 * torch.rand((), generator=gen, dtype=torch.float64) - 1)
            with torch.no_grad():
                m.scale.mul_(factor)
    return qann


def level_histogram(qann: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per Q-ReLU, the fraction of activations at each level (0..n, or -n..n when signed),
    to prove tests non-trivial."""
    hist = {}

    def levels(m, out):
        low = getattr(m, "min_level", 0)
        shifted = torch.round(out / m.scale).long().flatten() - low
        return torch.bincount(shifted, minlength=m.levels - low + 1) / out.numel()

    hooks = [
        m.register_forward_hook(
            lambda m, _i, out, name=name: hist.__setitem__(name, levels(m, out))
        )
        for name, m in qann.named_modules()
        if isinstance(m, QReLU)
    ]
    with torch.no_grad():
        qann(x)
    for h in hooks:
        h.remove()
    return hist


def realistic_qann(model: nn.Module, levels: int, x: torch.Tensor, seed: int = 0) -> nn.Module:
    return calibrate(to_qann(model, levels), x, seed)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)
