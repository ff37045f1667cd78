"""Every conversion method by the name configs use (``method=qcfs``), and the settings a
run gives them. A new method is a file beside the others and one entry here; nothing
outside ``spikezip/methods/`` (and its ``conf/method/`` file) changes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch.utils.data import DataLoader, Dataset

from spikezip.methods import rate
from spikezip.methods.base import Method
from spikezip.methods.opi import OPI
from spikezip.methods.qcfs import QCFS
from spikezip.methods.rate import Rate
from spikezip.methods.spikezip import SpikeZIP
from spikezip.settings import Choice, SettingError, choice, positive

METHODS: dict[str, Method] = {m.name: m for m in (SpikeZIP(), QCFS(), Rate(), OPI())}

# The closed set a config schema accepts, taken from the registry.
MethodName = Choice("MethodName", {name: name for name in METHODS})


@dataclass
class MethodConfig:
    """Which conversion a run makes (the ``method`` node of ``train.py``'s config).

    ``percentile``, ``calibration_batches``, ``start``: the rate method's thresholds (a
    percentile of each ReLU's activations over that many training batches) and its IF
    neurons' start potential, a fraction of the threshold.
    """

    name: MethodName = MethodName.spikezip
    percentile: float = rate.PERCENTILE
    calibration_batches: int = rate.CALIBRATION_BATCHES
    start: float = rate.START

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
    return METHODS[settings_of(value).name.value]


# Calibration batches are always this size, so ``calibration_batches`` means the same
# samples in train.py, convert.py and the conversion callback.
CALIBRATION_BATCH = 64


def calibration_data(train: Dataset) -> DataLoader:
    """The batches a calibrating method (rate coding) sets its thresholds on: the training
    split without augmentation, in its stored order (the same thresholds on every rerun
    and process)."""
    return DataLoader(train, CALIBRATION_BATCH, shuffle=False)
