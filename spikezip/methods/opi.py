"""OPI (Bu, Ding, Yu, Huang, "Optimized potential initialization for low-latency spiking
neural networks", AAAI 2022, arXiv:2202.01440): clipped-ReLU ANN with a learned threshold,
IF neurons started at half the threshold, approximate."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.opi import to_opi, to_opi_snn
from spikezip.methods.base import Method
from spikezip.snn import Encoding


class OPI(Method):
    name = "opi"
    exact = False
    without_levels = "clips its ReLUs without quantizing: it has no quantization levels"

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return to_opi(teacher)  # ``levels`` unused: the clip is not quantized

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_opi_snn(ann)
