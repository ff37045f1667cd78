"""Rate coding (Rueckauer et al., "Conversion of continuous-valued deep networks to
efficient event-driven networks for image classification", Frontiers in Neuroscience
2017): the ReLU network itself, IF neurons with percentile thresholds, approximate."""

from __future__ import annotations

from torch import nn

from spikezip.baselines.rate import calibrate_thresholds, to_rate_snn
from spikezip.methods.base import Method
from spikezip.quant import morph
from spikezip.snn import Encoding

# The settings a conversion without a run's (``settings=None``) uses: those of
# :class:`spikezip.methods.MethodConfig`.
PERCENTILE, CALIBRATION_BATCHES, START = 99.9, 10, 0.0


class Rate(Method):
    name = "rate"
    exact = False
    without_levels = "keeps the ReLUs: it has no quantization levels"
    calibrates = True
    settings = ("percentile", "calibration_batches", "start")

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        return morph(teacher)  # max-pool -> average-pool, ReLUs kept

    def convert(self, ann, *, encoding=Encoding.even, calibration=None, settings=None):
        """Thresholds from a percentile of each ReLU's activations over ``calibration``
        batches; without them every threshold is 1, to be overwritten by a saved SNN's."""
        percentile, batches, start = (
            (settings.percentile, settings.calibration_batches, settings.start)
            if settings is not None
            else (PERCENTILE, CALIBRATION_BATCHES, START)
        )
        if calibration is None:
            relus = [n for n, m in ann.named_modules() if isinstance(m, nn.ReLU)]
            thresholds = dict.fromkeys(relus, 1.0)
        else:
            thresholds = calibrate_thresholds(ann, calibration, percentile, batches)
        return to_rate_snn(ann, thresholds, start)
