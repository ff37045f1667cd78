"""Offset spikes (Hao et al., "Bridging the gap between ANNs and SNNs by calibrating offset
spikes", ICLR 2023): a QCFS-trained ANN, IF neurons whose start potentials are shifted by
the offset spikes of ``rho`` probe steps on every input (counted in T), approximate."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.offset import RHO, to_offset_snn
from spikezip.baselines.qcfs import to_qcfs
from spikezip.methods.base import Method
from spikezip.snn import Encoding


class Offset(Method):
    name = "offset"
    exact = False
    settings = ("levels", "rho")
    paper = {  # noqa: RUF012
        "levels": {"default": 4, "imagenet": 16},
        "rho": {"default": 4, "imagenet": 8},
    }
    latency = (
        "T includes the rho probe steps, which give no output. Its calibration goes layer "
        "after layer, so a network run online, step by step, would wait rho steps per neuron "
        "layer before its first counted output; the paper's tables count neither"
    )

    def overhead(self, settings=None) -> int:
        return RHO if settings is None else settings.rho

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return to_qcfs(teacher, levels)

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_offset_snn(ann, self.overhead(settings))
