"""Spiking network: ST-BIF neurons, exact QANN -> SNN conversion, simulation, checks."""

from spikezip.snn.convert import ENCODINGS, to_snn
from spikezip.snn.equivalence import EquivalenceReport, LayerReport, check_equivalence
from spikezip.snn.evaluate import SNNEvaluation, evaluate_snn
from spikezip.snn.network import Simulation, SpikingNetwork
from spikezip.snn.neuron import STBIF, stbif_step
from spikezip.tracing import UnsupportedLayerError

__all__ = [
    "ENCODINGS",
    "STBIF",
    "SNNEvaluation",
    "EquivalenceReport",
    "LayerReport",
    "Simulation",
    "SpikingNetwork",
    "UnsupportedLayerError",
    "check_equivalence",
    "evaluate_snn",
    "stbif_step",
    "to_snn",
]
