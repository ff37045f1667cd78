"""Fast-SNN (Hu et al., "Fast-SNN: fast spiking neural network by converting quantized
ANN", TPAMI 2023): a uniformly quantized ReLU network with learned clips, signed IF
neurons, approximate."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.fastsnn import to_fastsnn, to_fastsnn_snn
from spikezip.methods.base import Method
from spikezip.snn import Encoding


class FastSNN(Method):
    name = "fastsnn"
    exact = False
    settings = ("levels",)
    paper = {"levels": {"default": 7, "imagenet": 7}}  # noqa: RUF012

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return to_fastsnn(teacher, levels)

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_fastsnn_snn(ann)
