"""QFFS, as far as it can be read here: an LSQ-quantized ANN and signed integrate-and-fire
neurons at its clip, fed the analog input on every step.

Li, Ma and Furber, "Quantization framework for fast spiking neural networks", Frontiers
in Neuroscience 16:918793, 2022. The paper's method sections could not be read where this
was built, and the paper has no public code. What is implemented is the reading its
abstract and its first author's later public code allow (Chen Li's
Dynamic-Confidence-in-Spiking-Neural-Networks, ``SNNActivation`` in ``all_models.py``,
whose README describes QFFS as "activation quantization + completely correct all noise by
generating negative spikes"):

- the ANN: LSQ's quantized ReLU ``s * clip(round(x / s), 0, L)`` with a learned step ``s``
  (the code's quantizer; SpikeZIP's own Q-ReLU computes it), ``L = method.levels``: 3 by
  default (the 2-bit activations of the author's description of QFFS);
- the SNN: neurons with threshold ``L * s`` (the clip; the code's ``th = s * (2^b - 1)``),
  ``V0`` half of it, reset by subtraction, at most one spike a step, and a negative spike
  when ``V < 0`` after more positive spikes than negative ones (the code's negative spike,
  present as a disabled line), fed the analog input and the biases whole on every step
  (the code's input), the output read as a rate: after ``T = L`` steps the spike count
  is the Q-ReLU's level.

Not implemented, because it could not be read: the paper's "membrane calibration" and any
other correction of "occasional noise" beyond the negative spikes; nor the code's disabled
cap of ``L`` spikes in all (a rate-coded SNN run beyond ``T = L`` would lose its large
activations to it, and nothing says QFFS has it). A table row of this method is of this
reading, and says so.
"""

from __future__ import annotations

import math

from torch import nn

from spikezip.baselines.fastsnn import SignedIF
from spikezip.quant import QReLU, to_qann
from spikezip.snn.convert import NeuronRule, to_snn
from spikezip.snn.network import SpikingNetwork
from spikezip.tracing import UnsupportedLayerError


def to_qffs(ann: nn.Module, levels: int) -> nn.Module:
    """A trainable QFFS copy of ``ann``: every ReLU an LSQ Q-ReLU with ``L = levels``."""
    return to_qann(ann, levels)


def signed_if_at_clip(name: str, qrelu: nn.Module) -> SignedIF:
    """``QReLU(L, s)`` -> signed IF neurons with threshold ``L * s``, ``V0`` half of it,
    a negative spike below zero."""
    scale = float(qrelu.scale.detach())
    if not (math.isfinite(scale) and scale > 0):
        raise UnsupportedLayerError(
            f"QReLU at '{name}' has scale {scale}: a neuron threshold must be positive and finite"
        )
    return SignedIF(qrelu.scale.detach() * qrelu.levels, start=0.5, margin=0.0)


def to_qffs_snn(ann: nn.Module) -> SpikingNetwork:
    """The QFFS SNN (as read here) of a trained QFFS ANN: signed IF neurons at each Q-ReLU's
    clip, the input and biases fed on every step."""
    return to_snn(ann, "constant", neuron=NeuronRule(QReLU, signed_if_at_clip))
