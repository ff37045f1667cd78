"""SRP (Hao et al., "Reducing ANN-SNN conversion error through residual membrane
potential", AAAI 2023): a QCFS-trained ANN, IF neurons gated by their residual potential
after ``tau`` pre-simulation steps on every input (counted in T), approximate."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.qcfs import to_qcfs
from spikezip.baselines.srp import TAU, to_srp_snn
from spikezip.methods.base import Method
from spikezip.snn import Encoding


class SRP(Method):
    name = "srp"
    exact = False
    settings = ("levels", "tau")
    paper = {  # noqa: RUF012
        "levels": {"default": 4, "imagenet": 16},
        "tau": {"default": 4, "imagenet": 8},
    }
    latency = (
        "T includes the tau pre-simulation steps, which give no output; the authors' code "
        "and tables count T after them, the paper's abstract tau + T"
    )

    def overhead(self, settings=None) -> int:
        return TAU if settings is None else settings.tau

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return to_qcfs(teacher, levels)

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        return to_srp_snn(ann, self.overhead(settings))
