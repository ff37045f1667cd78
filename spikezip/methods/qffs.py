"""QFFS (Li, Ma and Furber, "Quantization framework for fast spiking neural networks",
Frontiers in Neuroscience 2022), as far as it can be read without its method sections:
an LSQ-quantized ANN, signed capped IF neurons fed the input on every step, approximate
(:mod:`spikezip.baselines.qffs` says what is missing)."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.qffs import to_qffs, to_qffs_snn
from spikezip.methods.base import Method
from spikezip.snn import Encoding


class QFFS(Method):
    name = "qffs"
    exact = False
    settings = ("levels",)
    paper = {"levels": {"default": 3}}  # noqa: RUF012

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return to_qffs(teacher, levels)

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_qffs_snn(ann)
