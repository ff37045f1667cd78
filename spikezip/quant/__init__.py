"""Quantized ANN: the Q-ReLU activation (LSQ) and the SNN-friendly morphing of an ANN."""

from spikezip.quant.morph import UnsupportedLayerError, to_qann
from spikezip.quant.qrelu import QReLU, quantize

__all__ = ["QReLU", "UnsupportedLayerError", "quantize", "to_qann"]
