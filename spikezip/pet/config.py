"""The settings of paths-ensemble training, checked once, here (the ``pet`` node of
``train.py``'s config; :class:`PETConfig` also configures the Python API)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from spikezip.optim import OptimizerConfig
from spikezip.quant.integer import check_weight_bits
from spikezip.quant.qrelu import check_levels
from spikezip.settings import Choice, SettingError, choice, positive


class Label(Choice):
    """What a path's loss term compares with (Table 5d)."""

    soft = "soft"  # distillation from the full-precision teacher's outputs
    hard = "hard"  # the ground-truth labels
    mixed = "mixed"  # both, summed


class Sharing(Choice):
    """How a path-aware layer's parameters are shared between the paths (Table 5a/5b)."""

    share = "share"  # the paper's scheme (see spikezip.pet.paths)
    identical = "identical"  # one set, used unchanged by every path
    independent = "independent"  # one set per path


def check_path_levels(levels: Sequence[int]) -> list[int]:
    """The paths' levels, major path first, as a list of ints; each sub-path must be
    coarser than the path before it (the paper's ``{8, 4, 2}``): a repeated level is a
    second copy of one path, and a sub-path finer than the major path is not what PET
    distils from (its step ``n_mp s / n_i`` would be smaller than the major path's)."""
    levels = list(levels)
    if not levels:
        raise SettingError("levels must be a non-empty list: the major path's n first")
    try:
        levels = [check_levels(n) for n in levels]
    except ValueError:
        raise SettingError(
            f"levels must be positive integers (the paper's n), got {levels}"
        ) from None
    if any(a <= b for a, b in zip(levels, levels[1:], strict=False)):
        raise SettingError(
            f"levels must decrease strictly, major path first (e.g. [8, 4, 2]); got {levels}"
        )
    return levels


@dataclass
class PETConfig:
    """Paths-ensemble training (paper §3.4, eq. 4-6).

    ``levels``: major path first (converted to the SNN), then the sub-paths; one entry is
    plain quantization-aware training. ``alpha``, ``sub_label``, ``main_label``,
    ``temperature``: the ensemble loss. ``scale_sharing`` / ``bn_sharing``: the Q-ReLU
    scale and batch-norm sharing schemes. ``epochs``, ``optimizer``: the fine-tuning.
    ``max_accuracy_drop``: a finished run whose QANN is more than this (a fraction) below
    its teacher's accuracy gets a warning in the log and in ``snn_eval.json``.
    ``weight_bits``: integer weights of that many bits and an integer QANN, whose SNN is
    bit-exact (:mod:`spikezip.quant.integer`); None keeps float weights.
    """

    levels: list[int] = field(default_factory=lambda: [8, 4, 2])
    alpha: float = 1.0
    sub_label: Label = Label.soft
    main_label: Label = Label.soft
    temperature: float = 1.0
    scale_sharing: Sharing = Sharing.share
    bn_sharing: Sharing = Sharing.share
    epochs: int = 5
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=0.01))
    max_accuracy_drop: float = 0.05  # a QANN this far below its teacher gets a warning
    # Integer weights of this many bits (2..16), per output channel on a grid that makes
    # every threshold an integer (spikezip.quant.integer); None: float weights.
    weight_bits: int | None = None

    def __post_init__(self):
        self.levels = check_path_levels(self.levels)
        positive("alpha", self.alpha, zero=True)
        positive("temperature", self.temperature)
        self.sub_label = choice("sub_label", self.sub_label, Label)
        self.main_label = choice("main_label", self.main_label, Label)
        self.scale_sharing = choice("scale_sharing", self.scale_sharing, Sharing)
        self.bn_sharing = choice("bn_sharing", self.bn_sharing, Sharing)
        positive("epochs", self.epochs)  # an untrained QANN has no learned scales
        positive("max_accuracy_drop", self.max_accuracy_drop, zero=True)
        try:
            self.weight_bits = check_weight_bits(self.weight_bits)
        except ValueError as err:
            raise SettingError(str(err)) from None
        if isinstance(self.optimizer, dict):
            self.optimizer = OptimizerConfig(**self.optimizer)
