"""QCFS (Bu et al., "Optimal ANN-SNN conversion for high-accuracy and ultra-low-latency
spiking neural networks", ICLR 2022): clip-floor-shift ANN, IF neurons, approximate."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.qcfs import to_if_snn, to_qcfs
from spikezip.methods.base import Method
from spikezip.snn import Encoding


class QCFS(Method):
    name = "qcfs"
    exact = False
    settings = ("levels",)
    paper = {"levels": {"default": 4, "imagenet": 16}}  # noqa: RUF012

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return to_qcfs(teacher, levels)

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_if_snn(ann)
