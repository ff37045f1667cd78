"""How far each neuron layer of an SNN is from the ANN's activation at every time-step
(paper Fig. 5, right)."""

from __future__ import annotations

from torch import Tensor

from spikezip.snn.measure import LayerSums
from spikezip.snn.network import SpikingNetwork


class FeatureMapMeter(LayerSums):
    """Per neuron layer, the L1 distance between what the SNN's accumulated output says
    (:meth:`spikezip.snn.encoding.Release.estimate`) and the ANN's activation, at every
    T (:attr:`totals`, summed over samples). A meter of :func:`spikezip.snn.measure_snn`."""

    needs_activations = True

    def begin_batch(self, x: Tensor, activations: dict[str, Tensor]) -> None:
        super().begin_batch(x, activations)
        self._activations = activations

    def on_step(self, t: int, snn: SpikingNetwork) -> None:
        if t > self.timesteps:
            return
        for name, neuron in self.neurons.items():
            if t <= snn.overhead:  # the method's own steps: no output yet, as if all zero
                self.totals[name][t - 1] += self._activations[name].abs().sum()
                continue
            estimate = snn.release.estimate(neuron.accumulated(), t - snn.overhead)
            self.totals[name][t - 1] += (estimate - self._activations[name]).abs().sum()

    def result(self) -> dict[str, list[float]]:
        """Per layer, the mean L1 distance at ``T = 1..timesteps``."""
        return {name: curve.tolist() for name, curve in self.per_sample().items()}
