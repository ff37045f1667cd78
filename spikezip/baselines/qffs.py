"""QFFS, as far as it can be read here: an LSQ-quantized ANN and signed, capped
integrate-and-fire neurons fed the analog input on every step.

Li, Ma and Furber, "Quantization framework for fast spiking neural networks", Frontiers
in Neuroscience 16:918793, 2022. The paper's method sections could not be read where this
was built, and the paper has no public code. What is implemented is the reading its
abstract and its first author's public code allow (Chen Li's
Dynamic-Confidence-in-Spiking-Neural-Networks, ``SNNActivation`` in ``all_models.py``,
whose README describes QFFS as "activation quantization + completely correct all noise by
generating negative spikes"):

- the ANN: LSQ's quantized ReLU ``s * clip(round(x / s), 0, L)`` with a learned step ``s``
  (the code's quantizer; SpikeZIP's own Q-ReLU computes it), ``L = method.levels``: 3 by
  default (the 2-bit activations of the author's description of QFFS);
- the SNN: neurons with threshold ``s``, ``V0 = s / 2``, reset by subtraction, a positive
  spike only while fewer than ``L`` net spikes have left, a negative spike when ``V < 0``
  after at least one net positive spike (the code's spike cap and negative spike, present
  as disabled lines) -- ST-BIF neurons (:class:`spikezip.snn.STBIF`) -- fed the analog
  input and the biases whole on every step (the code's input), the output read as a rate.

Not implemented, because it could not be read: the paper's "membrane calibration" and any
other correction of "occasional noise" beyond the negative spikes. A table row of this
method is of this reading, and says so.
"""

from __future__ import annotations

from torch import nn

from spikezip.quant import to_qann
from spikezip.snn.convert import to_snn
from spikezip.snn.network import SpikingNetwork


def to_qffs(ann: nn.Module, levels: int) -> nn.Module:
    """A trainable QFFS copy of ``ann``: every ReLU an LSQ Q-ReLU with ``L = levels``."""
    return to_qann(ann, levels)


def to_qffs_snn(ann: nn.Module) -> SpikingNetwork:
    """The QFFS SNN (as read here) of a trained QFFS ANN: ST-BIF neurons, the input and
    biases fed on every step."""
    return to_snn(ann, "constant")
