"""How far each neuron layer of an SNN is from the ANN's activation at every time-step
(paper Fig. 5, right)."""

from __future__ import annotations

import torch
from torch import Tensor

from spikezip.snn.measure import ReduceSum, sum_across
from spikezip.snn.network import SpikingNetwork


class FeatureMapMeter:
    """Per neuron layer, the L1 distance between what the SNN's accumulated output says
    (:meth:`spikezip.snn.encoding.Release.estimate`) and the ANN's activation, at every
    T, averaged over samples. A meter of :func:`spikezip.snn.measure_snn`."""

    needs_activations = True

    def __init__(self, snn: SpikingNetwork, timesteps: int):
        self.timesteps = timesteps
        self.distances = {name: torch.zeros(timesteps, dtype=torch.float64) for name in snn.neurons}
        self.samples = torch.zeros((), dtype=torch.float64)

    def begin_batch(self, x: Tensor, activations: dict[str, Tensor]) -> None:
        self._activations = activations
        self.samples += len(x)
        self.distances = {k: v.to(x.device) for k, v in self.distances.items()}

    def on_step(self, t: int, snn: SpikingNetwork) -> None:
        if t > self.timesteps:
            return
        for name, neuron in snn.neurons.items():
            estimate = snn.release.estimate(neuron.accumulated(), t)
            self.distances[name][t - 1] += (estimate - self._activations[name]).abs().sum()

    def reduce(self, reduce_sum: ReduceSum) -> None:
        """Sum the distances over processes, in place."""
        names = list(self.distances)
        *distances, self.samples = sum_across([*self.distances.values(), self.samples], reduce_sum)
        self.distances = dict(zip(names, distances, strict=True))

    def result(self) -> dict[str, list[float]]:
        samples = max(float(self.samples), 1.0)
        return {k: (v.cpu() / samples).tolist() for k, v in self.distances.items()}
