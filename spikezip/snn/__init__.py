"""Spiking network: neurons, exact QANN -> SNN conversion, simulation, checks, measurement."""

from spikezip.snn.convert import ST_BIF, NeuronRule, to_snn
from spikezip.snn.encoding import Encoding, Release
from spikezip.snn.equivalence import EquivalenceReport, LayerReport, check_equivalence
from spikezip.snn.measure import Curve, Measurement, measure_snn
from spikezip.snn.network import MAX_TIMESTEPS, Backend, Simulation, SpikingNetwork
from spikezip.snn.neuron import STBIF, IFNeuron, SpikingNeuron, if_step, stbif_step
from spikezip.tracing import UnsupportedLayerError

__all__ = [
    "MAX_TIMESTEPS",
    "Backend",
    "Curve",
    "Measurement",
    "ST_BIF",
    "STBIF",
    "Encoding",
    "EquivalenceReport",
    "IFNeuron",
    "LayerReport",
    "NeuronRule",
    "Release",
    "Simulation",
    "SpikingNetwork",
    "SpikingNeuron",
    "UnsupportedLayerError",
    "check_equivalence",
    "if_step",
    "measure_snn",
    "stbif_step",
    "to_snn",
]
