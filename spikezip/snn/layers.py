"""Affine layers stepped in time, their bias released as the input is (paper §3.2)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikezip.snn.encoding import Release


class Released(nn.Module):
    """Base of everything that enters the SNN as the input does: a share ``1 / d`` on the
    steps that release input (see :class:`spikezip.snn.encoding.Release`), nothing on the
    others. The simulator calls :meth:`begin` before a run and sets ``releasing`` for each
    step."""

    spikezip_leaf = True

    def __init__(self):
        super().__init__()
        self.releasing = False
        self.divisor = 1
        self.release: Release | None = None  # an integer release: the share changes per step

    def begin(self, divisor: int, release: Release | None = None) -> None:
        """Prepare the coming run, whose releasing steps each carry ``1 / divisor`` (with
        an integer ``release``, the integer shares of :meth:`Release.portion`; the
        simulator then calls :meth:`at` before each releasing step)."""
        self.divisor = divisor
        self.release = release if release is not None and release.integer else None

    def at(self, t: int) -> None:
        """Step ``t`` of an integer release comes next."""
        self._t = t


class ReleasedConstant(Released):
    """A constant of the QANN's graph that is *added* to activations (a positional
    embedding, a class token concatenated to the tokens, a Python number added to a
    tensor): released like a bias, ``c / d`` on the releasing steps and 0 after, so the
    steps sum to ``c``. Called with the constant (a tensor computed from parameters and
    shapes only, or a number); returns its share for this step."""

    def forward(self, c):
        if self.releasing:
            if self.release is not None:
                return self.release.portion(c, self._t)
            return c / self.divisor
        return torch.zeros_like(c) if isinstance(c, Tensor) else 0.0


class ReleasedBias(Released):
    """Base of layers ``L(x) = A x + b`` run as ``A x_t + b / d`` on the steps that
    release input, ``A x_t`` on the others.

    With the even release (``d = T_off`` on steps ``1..T_off``) the steps sum to
    ``A (sum x_t) + b``: the QANN layer applied to the total input.
    """

    def __init__(self, bias: Tensor):
        super().__init__()
        self.register_buffer("bias", bias.detach().clone())
        self._share: Tensor | None = None

    def begin(self, divisor: int, release: Release | None = None) -> None:
        """Precompute the bias released per step, ``b / divisor``, for the coming run."""
        super().begin(divisor, release)
        self._share = self.bias / divisor

    def at(self, t: int) -> None:
        super().at(t)
        self._share = self.release.portion(self.bias, t)


class SpikingAffine(ReleasedBias):
    """A conv / linear layer (BN already fused in) with its bias released evenly.

    The released share goes into the layer's own bias argument, so adding it costs no
    extra pass over the output. Input and output shapes are those of the wrapped layer.
    """

    def __init__(self, layer: nn.Module):
        layer = copy.deepcopy(layer)
        weight = layer.weight
        bias = layer.bias if layer.bias is not None else weight.new_zeros(weight.shape[0])
        super().__init__(bias)
        layer.bias = None
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        share = self._share if self.releasing else None
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, self.layer.weight, share)
        return self.layer._conv_forward(x, self.layer.weight, share)


class SpikingBatchNorm(ReleasedBias):
    """An eval-mode batch-norm not preceded by a conv / linear: per-channel
    ``x * gamma / sqrt(var + eps)`` every step, plus the released shift. Input ``[B, C, ...]``."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        std = torch.sqrt(bn.running_var + bn.eps)
        gain = bn.weight / std if bn.affine else 1.0 / std
        shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * gain
        super().__init__(shift.detach())
        self.register_buffer("gain", gain.detach())

    def forward(self, x: Tensor) -> Tensor:
        # [C] -> [C, 1, ...]: BatchNorm1d sees [B, C] and [B, C, L] alike.
        shape = (-1,) + (1,) * (x.dim() - 2)
        if self.releasing:
            return torch.addcmul(self._share.view(shape), x, self.gain.view(shape))
        return x * self.gain.view(shape)
