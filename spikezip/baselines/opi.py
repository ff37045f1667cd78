"""OPI: a clipped ReLU with a learned threshold, and integrate-and-fire neurons started at
half their threshold.

Bu, Ding, Yu and Huang, "Optimized potential initialization for low-latency spiking
neural networks", AAAI 2022 (arXiv:2202.01440). The ANN is trained with

    h(x) = clip(x, 0, lambda)

(no quantization, no floor), ``lambda`` learned per layer; its SNN has integrate-and-fire
neurons with threshold ``lambda``, reset by subtraction, and the membrane potential
initialised to ``lambda / 2`` (the paper's optimal initial potential, which turns the
SNN's floor into a rounding), fed the analog input and the biases whole on every step. The
neuron rule is QCFS's (:func:`spikezip.baselines.qcfs.to_if_snn`), only the ANN differs.

Where we chose among readings (the authors' public code: the trainable clipping layer
``TCL`` and ``ScaledNeuron`` of putshua/SNN_conversion_QCFS, ``modules.py``):

- ``lambda`` starts at 4, as ``TCL`` does, and at the teacher's clip for a clipped ReLU
  (``ReLU6``: 6), so that the student starts as the teacher's function there.
- ``lambda`` is trained by the run's shared optimizer, which does not decay 0-d
  parameters: the authors' code puts weight decay on it as on the weights.
- A neuron fires when its potential reaches ``lambda`` (``V >= lambda``), as the
  authors' spiking-jelly ``IFNode`` does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikezip.baselines.qcfs import to_if_snn
from spikezip.quant.morph import morph
from spikezip.snn.network import SpikingNetwork

# lambda's start value for a ReLU without a clip of its own (the authors' TCL).
INITIAL_THRESHOLD = 4.0


class ClipReLU(nn.Module):
    """``h(x) = clip(x, 0, lambda)``, ``lambda`` learned: its gradient is 1 where the
    input reaches ``lambda`` (``x >= lambda``, as the authors' ``TCL`` has it), 0 elsewhere;
    the input's is 1 inside the clip (``0 < x < lambda``).

    Args:
        threshold: initial ``lambda`` (default :data:`INITIAL_THRESHOLD`).
    """

    spikezip_leaf = True
    positive_parameters = ("threshold",)  # a threshold must stay > 0 (the divergence guard)

    def __init__(self, threshold: float | None = None):
        super().__init__()
        threshold = INITIAL_THRESHOLD if threshold is None else float(threshold)
        if not threshold > 0:
            raise ValueError(f"OPI threshold must be positive, got {threshold!r}")
        self.threshold = nn.Parameter(torch.tensor(threshold))

    def forward(self, x: Tensor) -> Tensor:
        lam = self.threshold.to(x.dtype)
        return torch.where(x >= lam, lam, torch.relu(x))

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}"


def to_opi(ann: nn.Module) -> nn.Module:
    """A trainable OPI copy of ``ann``: every ReLU a :class:`ClipReLU` (a clipped ReLU's
    ``lambda`` starting at its clip), max-pools average-pools (as for QCFS)."""
    return morph(ann, ClipReLU, ClipReLU)


def to_opi_snn(opi_ann: nn.Module) -> SpikingNetwork:
    """The OPI SNN of a trained OPI ANN: IF neurons with threshold ``lambda``, reset by
    subtraction and ``V0 = lambda / 2``, the input and biases fed on every step."""
    return to_if_snn(opi_ann, ClipReLU)
