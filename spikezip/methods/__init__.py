"""Conversion methods side by side, one file each: SpikeZIP (exact), QCFS, OPI, SlipReLU
and rate coding."""

from spikezip.methods.base import Method
from spikezip.methods.registry import (
    CALIBRATION_BATCH,
    METHODS,
    MethodConfig,
    MethodName,
    calibration_data,
    method_of,
    method_settings,
    paper_default,
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
    "method_settings",
    "paper_default",
    "settings_of",
]
