"""SpikeZIP: exact QANN -> SNN conversion with paths-ensemble training."""

__version__ = "0.1.0"
