"""Conversion methods side by side: what each makes of the teacher, and how it converts.

A method supplies the ANN its SNN comes from (SpikeZIP's Q-ReLU QANN, QCFS's
clip-floor-shift ANN, the ReLU network itself for rate coding), its neuron and input
regime, and whether the conversion is exact. Training, the simulator, the per-T
measurement, the energy meter and the run files are shared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from torch import nn
from torch.utils.data import DataLoader, Dataset

from spikezip.baselines.qcfs import to_if_snn, to_qcfs
from spikezip.baselines.rate import calibrate_thresholds, to_rate_snn
from spikezip.models import build_model
from spikezip.quant import morph, to_qann
from spikezip.settings import Choice, SettingError, choice, positive
from spikezip.snn import Encoding, SpikingNetwork, to_snn


class MethodName(Choice):
    spikezip = "spikezip"  # PET-trained QANN, ST-BIF neurons, evenly released input: exact
    qcfs = "qcfs"  # Bu et al., ICLR 2022
    rate = "rate"  # Rueckauer et al., 2017


@dataclass
class MethodConfig:
    """Which conversion a run makes (the ``method`` node of ``train.py``'s config).

    ``percentile``, ``calibration_batches``, ``start``: the rate method's thresholds (a
    percentile of each ReLU's activations over that many training batches) and its IF
    neurons' start potential, a fraction of the threshold.
    """

    name: MethodName = MethodName.spikezip
    percentile: float = 99.9
    calibration_batches: int = 10
    start: float = 0.0

    def as_dict(self) -> dict:
        """Plain data, for the run files that must rebuild this method's SNN."""
        return {**asdict(self), "name": self.name.value}

    def __post_init__(self):
        self.name = choice("name", self.name, MethodName)
        if not 0 < self.percentile <= 100:
            raise SettingError(f"percentile must be in (0, 100], got {self.percentile!r}")
        positive("calibration_batches", self.calibration_batches)
        if not 0 <= self.start < 1:
            raise SettingError(f"start must be in [0, 1), got {self.start!r}")


@dataclass(frozen=True)
class Method:
    """One conversion method. ``exact``: its SNN provably equals its ANN at equilibrium."""

    name: MethodName
    exact: bool

    def student(self, teacher: nn.Module, levels: int) -> nn.Module:
        """The trainable ANN made from the teacher, whose SNN the run will measure."""
        if self.name is MethodName.qcfs:
            return to_qcfs(teacher, levels)
        if self.name is MethodName.rate:
            return morph(teacher)  # max-pool -> average-pool, ReLUs kept
        return to_qann(teacher, levels)

    def rebuild(self, arch: dict, levels: int) -> nn.Module:
        """An untrained ANN of the structure :meth:`student` makes, to load weights into."""
        return self.student(build_model(**arch), levels)

    def convert(
        self,
        ann: nn.Module,
        *,
        encoding: Encoding | str = Encoding.even,
        calibration: Iterable | None = None,
        settings: MethodConfig | None = None,
    ) -> SpikingNetwork:
        """The SNN of ``ann``. The rate method calibrates its thresholds on
        ``calibration`` batches (training data); without them every threshold is 1, to be
        overwritten by a saved SNN's."""
        if self.name is MethodName.qcfs:
            return to_if_snn(ann)
        if self.name is MethodName.rate:
            settings = settings or MethodConfig(name=MethodName.rate)
            if calibration is None:
                relus = [n for n, m in ann.named_modules() if isinstance(m, nn.ReLU)]
                thresholds = dict.fromkeys(relus, 1.0)
            else:
                thresholds = calibrate_thresholds(
                    ann, calibration, settings.percentile, settings.calibration_batches
                )
            return to_rate_snn(ann, thresholds, settings.start)
        return to_snn(ann, encoding)


METHODS = {
    MethodName.spikezip: Method(MethodName.spikezip, exact=True),
    MethodName.qcfs: Method(MethodName.qcfs, exact=False),
    MethodName.rate: Method(MethodName.rate, exact=False),
}


def settings_of(value: MethodConfig | dict | str | None) -> MethodConfig:
    """Method settings from what a run file holds (a dict, a bare name, or nothing: the
    files of SpikeZIP before it had methods)."""
    if isinstance(value, MethodConfig):
        return value
    if isinstance(value, dict):
        return MethodConfig(**value)
    return MethodConfig(name=value or MethodName.spikezip)


def method_of(value: MethodConfig | dict | str | None) -> Method:
    """The method that ``value`` (settings, or a name) names."""
    return METHODS[settings_of(value).name]


# Calibration batches are always this size, so ``calibration_batches`` means the same
# samples in train.py, convert.py and the conversion callback.
CALIBRATION_BATCH = 64


def calibration_data(train: Dataset) -> DataLoader:
    """The batches a rate-coded conversion calibrates on: the training split without
    augmentation, in its stored order (the same thresholds on every rerun and process)."""
    return DataLoader(train, CALIBRATION_BATCH, shuffle=False)
