"""Other ANN-to-SNN conversions, run inside SpikeZIP on the same models, data and budget.

- :mod:`spikezip.baselines.qcfs`: QCFS (Bu et al., ICLR 2022, "Optimal ANN-SNN conversion
  for high-accuracy and ultra-low-latency spiking neural networks").
- :mod:`spikezip.baselines.opi`: OPI (Bu et al., AAAI 2022, "Optimized potential
  initialization for low-latency spiking neural networks").
- :mod:`spikezip.baselines.rate`: classic rate-coded conversion (Rueckauer et al.,
  Frontiers in Neuroscience 2017) with percentile-based thresholds.

Each supplies its activation, its neuron and its input regime; the simulator, the per-T
measurement and the energy meter are SpikeZIP's.
"""
