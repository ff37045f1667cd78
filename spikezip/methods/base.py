"""What every conversion method says of itself (:class:`Method`); each method is one file
beside this one, and :mod:`spikezip.methods.registry` lists them."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from spikezip.models import build_model
from spikezip.settings import Unused
from spikezip.snn import Encoding, SpikingNetwork

# What only a paths ensemble uses: the sub-paths' weight and label, and how the paths
# share the Q-ReLU scales and the batch-norm statistics.
SUB_PATH_SETTINGS = ("pet.alpha", "pet.sub_label", "pet.scale_sharing", "pet.bn_sharing")


class Method:
    """One conversion method: the ANN it makes of a teacher, how that ANN is fine-tuned,
    how it becomes an SNN and how a saved SNN is rebuilt. Training, the simulator, the
    per-T measurement, the energy meter and the run files are shared.

    Attributes:
        name: the method's name in configs and run files (``method=qcfs``).
        exact: its SNN provably equals its ANN at equilibrium (the conversion is proven
            and refused if it is not).
        ensemble: fine-tuned by paths-ensemble training, every ``pet.levels`` path sharing
            the weights; otherwise its one ANN is fine-tuned with the same loss, epochs and
            optimizer, at one L (:meth:`fine_tuned_levels`).
        calibrates: its conversion sets thresholds on training batches.
        without_levels: for a method whose ANN is not quantized, why (``pet.levels`` is
            then unused); None for a quantized one.
        settings: the fields of :class:`spikezip.methods.MethodConfig` it reads (the
            others are unused settings of a run with it).
        latency: how its T is counted, for the tables that compare methods.
        paper: its paper's value of each of its settings by dataset name
            (``"default"``: any dataset the paper does not name, read as its small-image
            benchmarks, CIFAR), which ``conf/method/<name>.yaml`` sets through the resolver
            ``spikezip.paper`` (:func:`spikezip.methods.paper_default`).
    """

    name: str
    exact: bool
    ensemble: bool = False
    calibrates: bool = False
    without_levels: str | None = None  # why its ANN has no quantization levels, if it has none
    settings: tuple[str, ...] = ()  # the method.* settings it reads
    paper: dict[str, dict[str, int]] = {}  # noqa: RUF012 (read only)
    latency: str = (
        "its output counts from step 1, the input fed on every step; it never settles, so "
        "its accuracy at T is that of the output rate after T steps"
    )

    @property
    def fine_tuning(self) -> str:
        """What its fine-tuning is called in messages: ``PET`` for an ensemble."""
        return "PET" if self.ensemble else self.name

    def fine_tuned_levels(self, pet, settings=None) -> list[int]:
        """The levels of the paths a run fine-tunes, given its ``pet`` settings and the
        method's (:class:`spikezip.methods.MethodConfig`): every ``pet.levels`` path for an
        ensemble; otherwise one, ``L = method.levels`` when set, else ``pet.levels[0]``."""
        if self.ensemble:
            return list(pet.levels)
        own = getattr(settings, "levels", None) if "levels" in self.settings else None
        return [own if own is not None else pet.levels[0]]

    def overhead(self, settings=None) -> int:
        """Steps its SNN spends on every input before its output counts (its
        :attr:`SpikingNetwork.overhead`), given the method's settings."""
        return 0

    def unused_settings(self, pet, settings=None) -> list[Unused]:
        """The settings of ``train.py`` this method leaves unused, given the run's ``pet``
        settings (:class:`spikezip.pet.PETConfig`): a run that chose one is refused, and
        one set by a default it did not choose is left out of its identity
        (:mod:`spikezip.config.usage`). ``settings``: the method's. A method with settings
        of its own to ignore adds them here."""
        unused = []
        own = getattr(settings, "levels", None) if "levels" in self.settings else None
        if not self.ensemble:
            why = f"method={self.name} fine-tunes one ANN, not a paths ensemble"
            unused += [Unused(key, why) for key in SUB_PATH_SETTINGS]
            if self.without_levels:
                why = f"method={self.name} {self.without_levels}"
                unused.append(Unused("pet.levels", why))
            elif own is not None:
                why = f"method={self.name} quantizes at method.levels = {own} (L)"
                unused.append(Unused("pet.levels", why))
            elif len(pet.levels) > 1:
                kept = pet.levels[:1]
                why = f"method={self.name} uses pet.levels[0] = {kept[0]} (L) only"
                unused.append(Unused("pet.levels", why, kept=kept))
        elif len(pet.levels) == 1:
            why = f"pet.levels={pet.levels} is one path: there are no sub-paths"
            unused += [Unused(key, why) for key in SUB_PATH_SETTINGS]
        if not self.exact:
            why = f"method={self.name} feeds its SNN the input on every step"
            unused.append(Unused("snn.encoding", why))
        return unused

    def student(self, teacher: nn.Module, levels: int, settings=None) -> nn.Module:
        """The trainable ANN made from the teacher, whose SNN the run will measure
        (``settings``: the run's :class:`spikezip.methods.MethodConfig`; None: the
        defaults, for a network whose weights and buffers are loaded next)."""
        raise NotImplementedError

    def rebuild(self, arch: dict, levels: int) -> nn.Module:
        """An untrained ANN of the structure :meth:`student` makes, to load weights into."""
        return self.student(build_model(**arch), levels)

    def path_names(self, levels: list[int]) -> list[str]:
        """Metric suffixes of the paths fine-tuned: ``l8``, ``l4``, ``l2`` for an
        ensemble (the levels never repeat), the method's name for its one ANN."""
        return [f"l{n}" for n in levels] if self.ensemble else [self.name]

    def convert(
        self,
        ann: nn.Module,
        *,
        encoding: Encoding | str = Encoding.even,
        calibration: Iterable | None = None,
        settings=None,
    ) -> SpikingNetwork:
        """The SNN of ``ann``; ``calibration``: training batches (for a method that
        :attr:`calibrates`), ``settings``: the run's
        :class:`spikezip.methods.MethodConfig`."""
        raise NotImplementedError

    def from_file(self, ann: nn.Module, saved: dict, settings=None) -> SpikingNetwork:
        """The SNN whose tensors a saved ``snn.pt`` (``saved``: its contents) holds, built
        from its ``ann`` before those tensors are loaded into it."""
        return self.convert(ann, settings=settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
