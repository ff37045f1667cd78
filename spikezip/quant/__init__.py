"""Quantized ANN: the Q-ReLU activation (LSQ) and the SNN-friendly morphing of an ANN."""

from spikezip.quant.morph import UnsupportedLayerError, morph, to_qann
from spikezip.quant.qrelu import QReLU, lsq_init_scale, lsq_quantize, quantize

__all__ = [
    "QReLU",
    "UnsupportedLayerError",
    "lsq_init_scale",
    "lsq_quantize",
    "morph",
    "quantize",
    "to_qann",
]
