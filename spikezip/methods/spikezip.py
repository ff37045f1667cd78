"""SpikeZIP: a paths-ensemble-trained QANN, ST-BIF neurons, evenly released input: exact."""

from __future__ import annotations

from torch import nn

from spikezip.methods.base import Method
from spikezip.quant import to_qann
from spikezip.snn import Encoding, SpikingNetwork, to_snn


class SpikeZIP(Method):
    name = "spikezip"
    exact = True
    ensemble = True
    latency = (
        "its output counts from step 1, the input and biases released over the first n "
        "steps; the output is the QANN's, exactly, from T_eq on"
    )

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return to_qann(teacher, levels)

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_snn(ann, encoding)

    def from_file(self, ann: nn.Module, saved: dict, settings=None) -> SpikingNetwork:
        release = saved["release_steps"] if saved["encoding"] == "even" else None
        return to_snn(ann, saved["encoding"], release)
