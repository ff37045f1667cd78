"""Classic rate-coded conversion (Rueckauer et al., "Conversion of continuous-valued deep
networks to efficient event-driven networks for image classification", Frontiers in
Neuroscience 2017).

The ReLU network itself becomes integrate-and-fire neurons with reset by subtraction,
fed the analog input and the biases on every step. Each layer's threshold is a high
percentile (99.9% by default) of its ReLU's non-zero activations on training batches: the
paper's data-based, outlier-robust normalisation (as its SNN toolbox computes it). A spike
carries ``threshold`` downstream, so weights need no rescaling.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from spikezip.snn.convert import NeuronRule, to_snn
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import IFNeuron

# Per layer and batch at most this many activations enter the percentile (a seeded sample).
SAMPLE = 1 << 18


@torch.no_grad()
def calibrate_thresholds(
    ann: nn.Module,
    batches: Iterable,
    percentile: float = 99.9,
    limit_batches: int | None = 10,
) -> dict[str, float]:
    """Per ``nn.ReLU`` (by name): the ``percentile`` of its non-zero outputs over the
    first ``limit_batches`` batches (Rueckauer et al.'s robust normalisation); a layer that
    never fires gets threshold 1."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    relus = {n: m for n, m in ann.named_modules() if isinstance(m, nn.ReLU)}
    seen: dict[str, list[Tensor]] = {n: [] for n in relus}
    gen = torch.Generator().manual_seed(0)

    def keep(name: str, out: Tensor) -> None:
        flat = out.detach().flatten().float().cpu()
        flat = flat[flat > 0]
        if flat.numel() > SAMPLE:
            flat = flat[torch.randint(flat.numel(), (SAMPLE,), generator=gen)]
        seen[name].append(flat)

    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: keep(n, out)) for n, m in relus.items()
    ]
    was_training = ann.training
    ann.eval()
    device = next(ann.parameters()).device
    try:
        for i, (x, _) in enumerate(batches):
            if limit_batches is not None and i >= limit_batches:
                break
            ann(x.to(device))
    finally:
        ann.train(was_training)
        for hook in hooks:
            hook.remove()
    thresholds = {}
    for name, values in seen.items():
        active = torch.cat(values) if values else torch.zeros(0)
        value = float(torch.quantile(active, percentile / 100)) if active.numel() else 0.0
        thresholds[name] = value if value > 0 else 1.0
    return thresholds


def to_rate_snn(ann: nn.Module, thresholds: dict[str, float], start: float = 0.0) -> SpikingNetwork:
    """The rate-coded SNN of a ReLU network (max-pools already average-pools): each ReLU
    at ``name`` becomes IF neurons with threshold ``thresholds[name]`` and start potential
    ``start * threshold`` (0 in Rueckauer et al.)."""

    def build(name: str, relu: nn.Module) -> IFNeuron:
        return IFNeuron(thresholds[name], start=start)

    return to_snn(ann, "constant", neuron=NeuronRule(nn.ReLU, build))
