"""SlipReLU: a weighted sum of a clipped ReLU and a clip-floor step, and integrate-and-fire
neurons started at the step's shift.

Jiang, Anumasa, De Masi, Xiong and Gu, "A unified optimization framework of ANN-SNN
conversion: towards optimal mapping from activation values to firing rates", ICML 2023.
The ANN is trained with

    h(x) = a * theta * clip(x / theta + d1 / L, 0, 1)
           + (1 - a) * theta * clip(floor(L * x / theta + d2) / L, 0, 1)

``theta`` learned per layer, ``a`` the coefficient (``a = 0``: QCFS's clip-floor-shift,
``a = 1``: a clipped ReLU), ``d1 = 0`` and ``d2 = 1/2`` the shifts. Its SNN has
integrate-and-fire neurons with threshold ``theta``, reset by subtraction, the membrane
started at ``d2 * theta`` (the coefficient plays no part in the SNN), fed the analog input
and the biases whole on every step; the neuron rule is QCFS's
(:func:`spikezip.baselines.qcfs.to_if_snn`).

Where we chose among readings (the authors' public code, HaiyanJiang/SNN_Conversion_unified,
``MySlipReLU`` and ``ScaledNeuron`` in ``modules.py``):

- ``a = 0.5``, ``d1 = 0``, ``d2 = 1/2`` and ``theta`` starting at 8 (the code's defaults;
  a teacher's clip, ``ReLU6``, starts it at 6). ``a`` is fixed: the code's learnable-``a``
  mode creates a parameter its optimizer never sees.
- ``L`` is ``method.levels``: 16 by default, the code's (its README sets it to the
  latency aimed at).
- ``floor`` has a straight-through gradient; every other gradient (``theta``'s through
  both terms) is autograd's, as in the code. ``theta`` is trained by the run's shared
  optimizer, which does not decay 0-d parameters (the code decays it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikezip.baselines.qcfs import _floor_ste, to_if_snn
from spikezip.quant.morph import morph
from spikezip.quant.qrelu import check_levels
from spikezip.snn.network import SpikingNetwork

COEFFICIENT = 0.5  # a: the clipped ReLU's weight (the authors' default)
INITIAL_THRESHOLD = 8.0  # theta's start for a ReLU without a clip of its own
SHIFT_CLIP, SHIFT_STEP = 0.0, 0.5  # d1, d2


def check_coefficient(coefficient: float) -> float:
    """``a`` in [0, 1], or a ValueError naming it."""
    if not 0 <= coefficient <= 1:
        raise ValueError(f"the SlipReLU coefficient must be in [0, 1], got {coefficient!r}")
    return float(coefficient)


class SlipReLU(nn.Module):
    """``a * clip_relu(x) + (1 - a) * clip_floor(x)`` with a learned threshold ``theta``
    (module docstring).

    Args:
        levels: L (``method.levels`` in a run).
        coefficient: ``a``, kept as a buffer so a saved network rebuilds with it.
        threshold: initial ``theta`` (default :data:`INITIAL_THRESHOLD`).
    """

    spikezip_leaf = True
    positive_parameters = ("threshold",)  # a threshold must stay > 0 (the divergence guard)

    def __init__(
        self, levels: int, coefficient: float = COEFFICIENT, threshold: float | None = None
    ):
        super().__init__()
        self.levels = check_levels(levels)
        threshold = INITIAL_THRESHOLD if threshold is None else float(threshold)
        if not threshold > 0:
            raise ValueError(f"SlipReLU threshold must be positive, got {threshold!r}")
        self.threshold = nn.Parameter(torch.tensor(threshold))
        self.register_buffer("coefficient", torch.tensor(check_coefficient(coefficient)))

    def forward(self, x: Tensor) -> Tensor:
        theta, levels = self.threshold, self.levels
        a = self.coefficient.to(x.dtype)
        z = x / theta
        ramp = torch.clamp(z + SHIFT_CLIP / levels, 0, 1)
        step = torch.clamp(_floor_ste(levels * z + SHIFT_STEP) / levels, 0, 1)
        return theta * (a * ramp + (1 - a) * step)

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, coefficient={self.coefficient.item():g}, "
            f"threshold={self.threshold.item():.4g}"
        )


def to_slipr(ann: nn.Module, levels: int, coefficient: float = COEFFICIENT) -> nn.Module:
    """A trainable SlipReLU copy of ``ann``: every ReLU a :class:`SlipReLU` (a clipped
    ReLU's ``theta`` starting at its clip), max-pools average-pools (as for QCFS)."""
    levels, coefficient = check_levels(levels), check_coefficient(coefficient)
    return morph(ann, lambda clip: SlipReLU(levels, coefficient, clip), SlipReLU)


def to_slipr_snn(ann: nn.Module) -> SpikingNetwork:
    """The SNN of a trained SlipReLU ANN: IF neurons with threshold ``theta``, reset by
    subtraction, ``V0 = d2 * theta``, the input and biases fed on every step."""
    return to_if_snn(ann, SlipReLU, start=SHIFT_STEP)
