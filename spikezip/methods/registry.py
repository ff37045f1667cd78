"""Every conversion method by the name configs use (``method=qcfs``), and the settings a
run gives them. A new method is a file beside the others and one entry here; nothing
outside ``spikezip/methods/`` (and its ``conf/method/`` file) changes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from torch.utils.data import DataLoader, Dataset

from spikezip.baselines import offset, slipr, srp
from spikezip.methods import rate
from spikezip.methods.base import Method
from spikezip.methods.fastsnn import FastSNN
from spikezip.methods.offset import Offset
from spikezip.methods.opi import OPI
from spikezip.methods.qcfs import QCFS
from spikezip.methods.qffs import QFFS
from spikezip.methods.rate import Rate
from spikezip.methods.slipr import SlipReLUMethod
from spikezip.methods.spikezip import SpikeZIP
from spikezip.methods.srp import SRP
from spikezip.settings import Choice, SettingError, choice, positive

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        SpikeZIP(),
        QCFS(),
        Rate(),
        OPI(),
        Offset(),
        SRP(),
        SlipReLUMethod(),
        FastSNN(),
        QFFS(),
    )
}

# The closed set a config schema accepts, taken from the registry.
MethodName = Choice("MethodName", {name: name for name in METHODS})


@dataclass
class MethodConfig:
    """Which conversion a run makes (the ``method`` node of ``train.py``'s config).

    ``percentile``, ``calibration_batches``, ``start``: the rate method's thresholds (a
    percentile of each ReLU's activations over that many training batches) and its IF
    neurons' start potential, a fraction of the threshold. ``coefficient``: SlipReLU's
    weight ``a`` of the clipped ReLU (``method=slipr``). ``levels``: the L of a method
    quantized at its own level (None: ``pet.levels[0]``; its ``conf/method`` file sets its
    paper's, :attr:`Method.paper`). ``rho``: the offset method's probe
    steps; ``tau``: SRP's pre-simulation steps (both counted in T). A method reads the fields its
    :attr:`Method.settings` names; the others are unused settings of its runs.
    """

    name: MethodName = MethodName.spikezip
    percentile: float = rate.PERCENTILE
    calibration_batches: int = rate.CALIBRATION_BATCHES
    start: float = rate.START
    coefficient: float = slipr.COEFFICIENT
    levels: int | None = None
    rho: int = offset.RHO
    tau: int = srp.TAU

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
        if not 0 <= self.coefficient <= 1:
            raise SettingError(f"coefficient must be in [0, 1], got {self.coefficient!r}")
        positive("levels", self.levels, none=True)
        positive("rho", self.rho)
        positive("tau", self.tau)


def paper_default(name: str, setting: str, dataset: str) -> int:
    """The value of ``method.<setting>`` that method ``name``'s paper uses on ``dataset``
    (its small-image value for a dataset it does not name): the resolver
    ``spikezip.paper`` of the method configs (``${spikezip.paper:offset,rho,${data.name}}``)."""
    values = METHODS[name].paper.get(setting)
    if not values:
        raise SettingError(f"method={name} has no paper default for {setting!r}")
    return values.get(dataset, values["default"])


def method_settings() -> list[str]:
    """The ``method.*`` settings, by field name (``name`` aside)."""
    return [f.name for f in fields(MethodConfig) if f.name != "name"]


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
