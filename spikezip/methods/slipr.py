"""SlipReLU (Jiang et al., "A unified optimization framework of ANN-SNN conversion:
towards optimal mapping from activation values to firing rates", ICML 2023): a weighted
sum of a clipped ReLU and a clip-floor step, IF neurons started at the step's shift,
approximate."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.slipr import COEFFICIENT, to_slipr, to_slipr_snn
from spikezip.methods.base import Method
from spikezip.snn import Encoding


class SlipReLUMethod(Method):
    name = "slipr"
    exact = False
    settings = ("levels", "coefficient")
    paper = {"levels": {"default": 16}}  # noqa: RUF012

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        coefficient = COEFFICIENT if settings is None else settings.coefficient
        return to_slipr(teacher, levels, coefficient)

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_slipr_snn(ann)  # the coefficient is the ANN's alone
