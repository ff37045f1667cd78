"""Conversion methods side by side, one file each: SpikeZIP (exact), QCFS, OPI and
rate coding."""

from spikezip.methods.base import Method
from spikezip.methods.registry import (
    CALIBRATION_BATCH,
    METHODS,
    MethodConfig,
    MethodName,
    calibration_data,
    method_of,
    settings_of,
)

__all__ = [
    "CALIBRATION_BATCH",
    "METHODS",
    "Method",
    "MethodConfig",
    "MethodName",
    "calibration_data",
    "method_of",
    "settings_of",
]
