"""How far each neuron layer of an SNN is from the ANN's activation at every time-step
(paper Fig. 5, right)."""

from __future__ import annotations

import torch
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
        # One scratch tensor per layer for the whole batch: no temporaries per step.
        self._scratch = {name: torch.empty_like(a) for name, a in activations.items()}

    def on_step(self, t: int, snn: SpikingNetwork) -> None:
        if t > self.timesteps:
            return
        for name, neuron in self.neurons.items():
            activation = self._activations[name]
            if t <= snn.overhead:  # the method's own steps: no output yet, as if all zero
                self.totals[name][t - 1] += torch.linalg.vector_norm(activation, 1)
                continue
            # Release.estimate, in place: the total itself, or its rate for a constant input.
            estimate = neuron.accumulated(out=self._scratch[name])
            if snn.release.steps is None:
                estimate.div_(t - snn.overhead)
            self.totals[name][t - 1] += torch.linalg.vector_norm(estimate.sub_(activation), 1)

    def result(self) -> dict[str, list[float]]:
        """Per layer, the mean L1 distance at ``T = 1..timesteps``."""
        return {name: curve.tolist() for name, curve in self.per_sample().items()}
