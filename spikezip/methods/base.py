"""What every conversion method says of itself (:class:`Method`); each method is one file
beside this one, and :mod:`spikezip.methods.registry` lists them."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from spikezip.models import build_model
from spikezip.snn import Encoding, SpikingNetwork


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
            optimizer, at ``L = pet.levels[0]``.
        calibrates: its conversion sets thresholds on training batches.
    """

    name: str
    exact: bool
    ensemble: bool = False
    calibrates: bool = False

    def student(self, teacher: nn.Module, levels: int) -> nn.Module:
        """The trainable ANN made from the teacher, whose SNN the run will measure."""
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
