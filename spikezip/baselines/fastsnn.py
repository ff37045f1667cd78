"""Fast-SNN: a uniformly quantized ReLU network with a learned clip, and signed
integrate-and-fire neurons that take back a spike fired too early.

Hu, Zheng, Jiang and Pan, "Fast-SNN: fast spiking neural network by converting quantized
ANN", IEEE TPAMI 2023 (arXiv:2305.19868). The ANN is trained with

    q(x) = alpha / L * round(L * clip(x / alpha, 0, 1))

``alpha`` learned per layer, ``L = 2^b - 1``; its gradient is APoT's: the input's passes
inside the clip, ``alpha``'s is ``1`` above it and ``q / alpha - x / alpha`` inside. Its SNN
has signed IF neurons: threshold ``alpha``, ``V0 = alpha / 2``; each step ``V <- V + x``,
then a spike ``+1`` if ``V >= alpha`` (``V <- V - alpha``), else a spike ``-1`` if
``V <= -1e-3`` while the neuron has fired more positive than negative spikes
(``V <- V + alpha``); fed the analog input and the biases whole on every step. The paper
runs it for ``T = L`` steps.

Where we chose among readings (the authors' public code, yangfan-hu/Fast-SNN,
``quant_layer.py`` and ``spiking.py``):

- ``L`` is ``method.levels``: 7 by default (3-bit activations, ``2^b - 1``, the paper's
  CIFAR and ImageNet setting; its 2-bit models have ``L = 3``).
- Weights stay full precision, as in the code's ImageNet and CIFAR ResNet-18 models (its
  CIFAR AlexNet / VGG / ResNet-20 also quantize the weights, APoT): no other method of this
  harness quantizes weights.
- ``alpha`` starts at 8 (the code's CIFAR value; 6 for a teacher's ``ReLU6``).
- The code's optional layer-wise fine-tuning of the SNN (``snn_ft.py``) is not run: the
  paper's conversion is complete without it, and it is the one step of this harness that
  would train a method's SNN rather than its ANN.
- The ``-1e-3`` margin of a negative spike is absolute, as in the code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikezip.baselines.qcfs import if_from_threshold
from spikezip.quant.morph import morph
from spikezip.quant.qrelu import check_levels
from spikezip.snn.convert import NeuronRule, to_snn
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import SpikingNeuron

INITIAL_CLIP = 8.0  # alpha's start for a ReLU without a clip of its own
NEGATIVE_MARGIN = 1e-3  # a negative spike needs V <= -this (absolute, as the authors')


class _UniformQuantizer(torch.autograd.Function):
    """APoT's uniform quantizer with a learned clip (forward and the authors' gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, levels: int) -> Tensor:
        u = x.clamp_min(0) / alpha  # the ReLU before the quantizer
        q = torch.round(u.clamp_max(1) * levels) / levels
        ctx.save_for_backward(u, q)
        return q * alpha

    @staticmethod
    def backward(ctx, grad: Tensor):
        u, q = ctx.saved_tensors
        inside = (u <= 1).to(grad.dtype)
        grad_x = grad * inside * (u > 0).to(grad.dtype)  # the ReLU's gradient is 0 below 0
        grad_alpha = (grad * ((u > 1).to(grad.dtype) + (q - u) * inside)).sum()
        return grad_x, grad_alpha.reshape(()), None


class UniformQuantReLU(nn.Module):
    """``alpha / L * round(L * clip(x / alpha, 0, 1))``, ``alpha`` learned (module
    docstring). ``threshold`` is ``alpha``, the IF neurons' threshold."""

    spikezip_leaf = True
    positive_parameters = ("threshold",)  # the clip must stay > 0 (the divergence guard)

    def __init__(self, levels: int, clip: float | None = None):
        super().__init__()
        self.levels = check_levels(levels)
        clip = INITIAL_CLIP if clip is None else float(clip)
        if not clip > 0:
            raise ValueError(f"Fast-SNN clip must be positive, got {clip!r}")
        self.threshold = nn.Parameter(torch.tensor(clip))

    def forward(self, x: Tensor) -> Tensor:
        return _UniformQuantizer.apply(x, self.threshold.to(x.dtype), self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.threshold.item():.4g}"


def to_fastsnn(ann: nn.Module, levels: int) -> nn.Module:
    """A trainable Fast-SNN copy of ``ann``: every ReLU a :class:`UniformQuantReLU` with
    ``L = levels`` (a clipped ReLU's ``alpha`` starting at its clip), max-pools
    average-pools (as for QCFS)."""
    levels = check_levels(levels)
    return morph(ann, lambda clip: UniformQuantReLU(levels, clip), UniformQuantReLU)


def signed_if_step(
    v: Tensor, count: Tensor, x: Tensor, threshold: Tensor, margin: float = NEGATIVE_MARGIN
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of signed IF neurons; returns ``(spike, v_next, count_next)``.

    ``V <- V + x``; ``+1`` if ``V >= Vthr`` (``V <- V - Vthr``); otherwise ``-1`` if
    ``V <= -margin`` (Fast-SNN's 1e-3; with ``margin = 0``: ``V < 0``) and ``count > 0``
    (``V <- V + Vthr``); ``count`` is the signed number of spikes so far, never below zero
    and unbounded above."""
    v = v + x
    up = v >= threshold
    v = torch.where(up, v - threshold, v)
    below = v <= -margin if margin > 0 else v < 0
    down = below & (count > 0)  # never after a +1: V >= 0 then
    v = torch.where(down, v + threshold, v)
    spike = up.to(v.dtype) - down.to(v.dtype)
    return spike, v, count + spike


class SignedIF(SpikingNeuron):
    """Signed IF neurons (:func:`signed_if_step`), ``V0 = start * Vthr``; ``margin``: how
    far below zero the potential must be for a negative spike (Fast-SNN's 1e-3)."""

    def __init__(
        self, threshold: Tensor | float, start: float = 0.5, margin: float = NEGATIVE_MARGIN
    ):
        super().__init__(threshold, start)
        self.margin = float(margin)

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None:
            self._init_state(x)
        self.spike, self.v, self.count = signed_if_step(
            self.v, self.count, x, self.threshold, self.margin
        )
        return self.spike * self.threshold

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold.item():.4g}, start={self.start:g}, margin={self.margin:g}"
        )


def to_fastsnn_snn(ann: nn.Module) -> SpikingNetwork:
    """The SNN of a trained Fast-SNN ANN: signed IF neurons with threshold ``alpha`` and
    ``V0 = alpha / 2``, the input and biases fed on every step."""

    def build(name: str, activation: nn.Module) -> SignedIF:
        return SignedIF(if_from_threshold(name, activation).threshold, start=0.5)

    return to_snn(ann, "constant", neuron=NeuronRule(UniformQuantReLU, build))
