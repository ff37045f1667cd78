"""QCFS: the quantization-clip-floor-shift activation and its integrate-and-fire SNN.

Bu et al., "Optimal ANN-SNN conversion for high-accuracy and ultra-low-latency spiking
neural networks", ICLR 2022. The ANN is trained with

    h(x) = lambda / L * clip(floor(x * L / lambda + 1/2), 0, L)

with a learned threshold ``lambda`` per layer; its SNN has integrate-and-fire neurons
with threshold ``lambda``, reset by subtraction and start potential ``lambda / 2``, fed the
analog input and the biases whole on every step. The firing rate approximates the ANN;
nothing guarantees equality at any T.

Defaults (``method.levels``): ``L = 4`` on small-image datasets, the authors' CIFAR-10
command (putshua/ANN_SNN_QCFS README), and 16 on ImageNet (the QCFS ImageNet model the
offset-spike authors start from). Where we differ from the authors' code: ``lambda`` starts
from LSQ's rule on the first batch (theirs at 8), and the run's shared optimizer does not
decay it (theirs does, as the weights).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikezip.quant.morph import morph
from spikezip.quant.qrelu import check_levels, lsq_init_scale
from spikezip.snn.convert import NeuronRule, to_snn
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import IFNeuron
from spikezip.tracing import UnsupportedLayerError


def _floor_ste(z: Tensor) -> Tensor:
    """``floor(z)`` forward, identity backward (the straight-through estimator QCFS uses)."""
    return z + (torch.floor(z) - z).detach()


class QCFS(nn.Module):
    """``h(x) = lambda / L * clip(floor(x * L / lambda + 1/2), 0, L)``, ``lambda`` learned.

    Args:
        levels: L, the quantization steps (``method.levels`` in a run: the paper's 4 on
            CIFAR, 16 on ImageNet, unless set).
        threshold: initial ``lambda``; when omitted, set from the first training batch so
            that ``lambda / L`` is LSQ's initial step (as SpikeZIP's Q-ReLU starts).
    """

    spikezip_leaf = True
    positive_parameters = ("threshold",)  # a step must stay > 0 (the divergence guard)

    def __init__(self, levels: int, threshold: float | None = None):
        super().__init__()
        self.levels = check_levels(levels)
        if threshold is not None and not threshold > 0:
            raise ValueError(f"QCFS threshold must be positive, got {threshold!r}")
        self.threshold = nn.Parameter(torch.tensor(1.0 if threshold is None else threshold))
        self.register_buffer("initialized", torch.tensor(threshold is not None))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.threshold.copy_(lsq_init_scale(x, self.levels) * self.levels)
                self.initialized.fill_(True)
        levels, lam = self.levels, self.threshold
        return torch.clamp(_floor_ste(x * levels / lam + 0.5), 0, levels) * lam / levels

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.threshold.item():.4g}"


def to_qcfs(ann: nn.Module, levels: int) -> nn.Module:
    """A trainable QCFS copy of ``ann``: every ReLU (clipped or not) a :class:`QCFS` with
    L = ``levels``, max-pools average-pools (as :func:`spikezip.quant.morph` does for
    SpikeZIP)."""
    levels = check_levels(levels)
    return morph(ann, lambda clip: QCFS(levels), QCFS)


def if_from_threshold(name: str, activation: nn.Module, start: float = 0.5) -> IFNeuron:
    """IF neurons for an activation with a learned clip ``threshold`` (QCFS's, OPI's
    clipped ReLU): threshold ``lambda``, reset by subtraction, ``V0 = start * lambda``."""
    threshold = float(activation.threshold.detach())
    if not (math.isfinite(threshold) and threshold > 0):
        raise UnsupportedLayerError(
            f"{type(activation).__name__} at '{name}' has threshold {threshold}: a neuron "
            "threshold must be positive and finite"
        )
    return IFNeuron(activation.threshold.detach(), start=start)


def to_if_snn(
    ann: nn.Module, activation: type[nn.Module] = QCFS, start: float = 0.5
) -> SpikingNetwork:
    """The IF SNN of a trained ANN whose activations (``activation``: QCFS by default,
    any module with a learned ``threshold``, such as OPI's clipped ReLU) become IF neurons
    (threshold ``lambda``, reset by subtraction, ``V0 = start * lambda``), batch-norm fused,
    the analog input and every bias fed whole on every step. ``simulate(x, timesteps)``
    gives ``[T, B, ...]`` accumulated outputs like the ST-BIF SNN; their rate (output / T)
    approximates the ANN."""

    def build(name: str, module: nn.Module) -> IFNeuron:
        return if_from_threshold(name, module, start)

    return to_snn(ann, "constant", neuron=NeuronRule(activation, build))
