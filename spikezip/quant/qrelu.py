"""Q-ReLU, the quantized ReLU that an ST-BIF neuron reproduces exactly, with LSQ training."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn


def check_levels(levels) -> int:
    """``levels`` (the paper's n) as a positive int, or a ValueError that shows the value."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive integer (the paper's n), got {levels!r}")
    return levels


def quantize(x: Tensor, scale: Tensor | float, levels: int, low: int = 0) -> Tensor:
    """Integer level of each input: ``clip(floor(x / s + 0.5), low, n)`` (``low = 0``
    for a Q-ReLU, ``-n`` for a signed quantizer).

    Rounds half *up*: an ST-BIF neuron started at ``V0 = s / 2`` settles on exactly this
    count, so ``torch.round`` (half to even) would disagree with the SNN on ties.
    """
    return torch.clamp(torch.floor(x / scale + 0.5), low, levels)


class _LSQReLU(torch.autograd.Function):
    """``y = s * quantize(x, s, n, low)`` with the LSQ gradients (Esser et al., 2020).

    With ``v = x / s``:
    ``dy/dx = 1`` for ``low < v < n`` else 0 (straight-through rounding);
    ``dy/ds = q - v`` for ``low < v < n``, ``q`` (low or n) outside, times the gradient
    scale ``g``.
    The forward value is computed exactly as :func:`quantize`, never through a
    detach trick, so a QANN in training mode and in eval mode give the same numbers.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, levels: int, grad_scale: float, low: int) -> Tensor:
        q = quantize(x, scale, levels, low)
        ctx.save_for_backward(x, scale)
        ctx.levels, ctx.grad_scale, ctx.low = levels, grad_scale, low
        return q * scale

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, scale = ctx.saved_tensors
        v = x / scale
        q = torch.clamp(torch.floor(v + 0.5), ctx.low, ctx.levels)
        inside = (v > ctx.low) & (v < ctx.levels)
        grad_x = grad_out * inside if ctx.needs_input_grad[0] else None
        grad_scale = None
        if ctx.needs_input_grad[1]:
            local = torch.where(inside, q - v, q)
            grad_scale = (grad_out * local).sum() * ctx.grad_scale
            grad_scale = grad_scale.reshape(scale.shape)
        return grad_x, grad_scale, None, None, None


def lsq_grad_scale(x: Tensor, levels: int) -> float:
    """LSQ's gradient scale ``1 / sqrt(N * n)``, N the number of features of one sample."""
    features = x[0].numel() if x.dim() > 1 else x.numel()
    return 1.0 / math.sqrt(max(features, 1) * levels)


def lsq_init_scale(x: Tensor, levels: int) -> Tensor:
    """LSQ's data-driven initial step ``2 * mean(|x|) / sqrt(n)`` (never 0).

    Under ``torch.distributed`` the mean is over every process's batch, so all processes
    start from the same step (DDP keeps parameters equal only if they start equal).
    """
    magnitude = x.detach().abs()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # In float64: a 16-bit sum (mixed precision) of a whole batch overflows.
        total = torch.stack(
            [
                magnitude.sum(dtype=torch.float64),
                magnitude.new_tensor(magnitude.numel(), dtype=torch.float64),
            ]
        )
        dist.all_reduce(total)
        mean = (total[0] / total[1]).to(x.dtype)
    else:
        mean = magnitude.mean()
    return torch.clamp(2.0 * mean / math.sqrt(levels), min=torch.finfo(x.dtype).tiny)


def lsq_quantize(x: Tensor, step: Tensor, levels: int, low: int = 0) -> Tensor:
    """``step * clip(floor(x / step + 0.5), low, levels)`` with LSQ gradients for x and
    step.

    ``step`` may be any differentiable expression of a learned scale (PET's sub-paths use
    ``n_mp * s / n_i``); its gradient flows back through it.
    """
    return _LSQReLU.apply(x, step, levels, lsq_grad_scale(x, levels), low)


class QReLU(nn.Module):
    """Quantized ReLU ``f(x) = s * clip(floor(x / s + 0.5), 0, n)`` with a learnable scale.

    Args:
        levels: n, the number of non-zero levels; outputs are ``{0, s, ..., n s}``.
        scale: initial s. When omitted, s is set by LSQ's rule from the first batch
            seen in training mode (``2 mean|x| / sqrt(n)``).
        signed: quantize to ``{-n s, ..., n s}`` instead (``clip(..., -n, n)``): the
            quantizer of a LayerNorm's output, of Q, K and V, of a residual stream. Its
            ST-BIF neuron's tracer is bounded by ``[-n, n]``.

    Shapes: any; ``scale`` is a scalar parameter named ``scale``.
    """

    spikezip_leaf = True  # one node in a torch.fx graph, not traced into
    positive_parameters = ("scale",)  # a step must stay > 0 (the divergence guard)

    def __init__(self, levels: int, scale: float | None = None, signed: bool = False):
        super().__init__()
        check_levels(levels)
        if scale is not None and not scale > 0:
            raise ValueError(f"QReLU scale must be positive, got {scale!r}")
        self.levels = levels
        self.signed = bool(signed)
        self.scale = nn.Parameter(torch.tensor(1.0 if scale is None else float(scale)))
        # A buffer (not a Python flag) so a loaded checkpoint is not re-initialised.
        self.register_buffer("initialized", torch.tensor(scale is not None))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.scale.copy_(lsq_init_scale(x, self.levels))
                self.initialized.fill_(True)
        return lsq_quantize(x, self.scale, self.levels, self.min_level)

    @property
    def min_level(self) -> int:
        """The lowest level: 0, or ``-n`` when signed."""
        return -self.levels if self.signed else 0

    def extra_repr(self) -> str:
        signed = ", signed" if self.signed else ""
        return f"levels={self.levels}, scale={self.scale.item():.4g}{signed}"
