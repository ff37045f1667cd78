"""Residual membrane potential (SRP): a QCFS-trained ANN whose IF neurons, on every input,
pre-simulate ``tau`` steps, then restart; a neuron left with no positive residual
potential is silenced for the steps that count.

Hao, Bu, Ding, Huang and Yu, "Reducing ANN-SNN conversion error through residual membrane
potential", AAAI 2023 (arXiv:2302.02091). The ANN is QCFS's
(:func:`spikezip.baselines.qcfs.to_qcfs`); its SNN has QCFS's IF neurons (threshold
``lambda``, reset by subtraction, ``V0 = lambda / 2``, fed the input and biases on every
step). Every input is first simulated for ``tau`` steps, all layers together, their
outputs not counted; then each neuron whose potential is not above ``1e-3 * lambda``
gets a gate of 0 (it has fired more than its input: an "unevenness" spike), the others 1,
and every neuron restarts from ``lambda / 2``. In the steps that count, a neuron
integrates, fires and resets as before, but only a gated-on neuron's spikes leave it.
The ``tau`` steps count in T (:attr:`SRPNetwork.overhead`).

Where we chose among readings (the authors' public code, hzc1208/ANN2SNN_SRP, ``MPLayer``
in ``modules.py``): the gate, its 1e-3 margin (in units of the threshold), the restart of
every layer at the same step and the spike of step ``tau`` passed on ungated are the
code's; ``tau = 4``, the paper's CIFAR setting, and 8 on ImageNet (its ResNet-34's; its
VGG-16 used 14). ``L`` is 4 (the code's default, its CIFAR setting) and 16 on ImageNet,
which the code does not state: the offset-spike method of the same authors, on the same
QCFS base, uses 16 there.
"""

from __future__ import annotations

from torch import Tensor, nn

from spikezip.baselines.qcfs import QCFS, if_from_threshold
from spikezip.snn.convert import NeuronRule, to_snn
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import IFNeuron, if_step

TAU = 4  # pre-simulation steps (the paper's CIFAR setting)
MARGIN = 1e-3  # a residual potential above this (in units of the threshold) keeps the gate on


class GatedIF(IFNeuron):
    """QCFS's IF neuron with an output gate (:attr:`gate`, None: open) set from its
    residual potential by :meth:`restart`."""

    batch_state = (*IFNeuron.batch_state, "gate")

    def __init__(self, threshold: Tensor | float, start: float = 0.5):
        super().__init__(threshold, start)
        self.gate: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self.gate = None

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None:
            self._init_state(x)
        # It fires and resets inside whether gated or not; only a gated-on spike leaves it.
        self.spike, self.v = if_step(self.v, x, self.threshold, out=(self.spike, self.v))
        if self.gate is not None:
            self.spike.mul_(self.gate)
        self.count.add_(self.spike)
        return self.spike * self.threshold

    def restart(self) -> None:
        """Gate on where the residual potential is above ``MARGIN * Vthr``, then start
        again from ``V0``: no spike counted, the membrane at ``start * Vthr``."""
        gate = (self.v > MARGIN * self.threshold).to(self.v.dtype)
        self._init_state(self.v)
        self.gate = gate


class SRPNetwork(SpikingNetwork):
    """The SNN of SRP: :meth:`prepare` pre-simulates ``tau`` steps and restarts every
    :class:`GatedIF`; :attr:`overhead` is ``tau``."""

    def __init__(self, snn: SpikingNetwork, tau: int):
        super().__init__(snn.graph, snn.release, snn.encoding)
        if tau < 1:
            raise ValueError(f"tau must be >= 1, got {tau}")
        self.tau = self.overhead = int(tau)

    def prepare(self, x, on_step) -> None:
        self._steps(x, self.tau, on_step)
        for neuron in self.neurons.values():
            neuron.restart()


def to_srp_snn(qcfs_ann: nn.Module, tau: int = TAU) -> SRPNetwork:
    """SRP's SNN of a trained QCFS ANN (module docstring)."""

    def build(name: str, activation: nn.Module) -> GatedIF:
        return GatedIF(if_from_threshold(name, activation).threshold, start=0.5)

    return SRPNetwork(to_snn(qcfs_ann, "constant", neuron=NeuronRule(QCFS, build)), tau)
