"""What is specific to the task a network solves: its losses, its score, its predictions.

The pipeline, PET and the per-T measurement of an SNN only call a :class:`Task`; each
task (:mod:`spikezip.tasks.classification`, :mod:`spikezip.tasks.detection`) owns its
measurement and reads its part of a report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from torch import Tensor

from spikezip.io import CheckpointError
from spikezip.snn.measure import Curve, Measurement

if TYPE_CHECKING:  # torchmetrics imports matplotlib: only the training modules need it
    from torchmetrics import Metric


# The time-steps a run's summary shows (those measured): the field's usual columns.
SUMMARY_TIMESTEPS = (1, 2, 4, 8, 16, 32)


class Task(Protocol):
    """The task-specific part of training and evaluating a network.

    ``name``: the task's name in configs and reports (``task=detection``).
    ``score_name``: what :meth:`metric` measures, in log keys (``val/acc``, ``val/map50``).
    ``score_on_training``: whether the training batches are scored too (a detector's mAP
    over the training set costs more than it tells).
    """

    name: str
    score_name: str
    score_on_training: bool

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Supervised loss against the labels (the teacher; PET's ``hard`` terms)."""
        ...

    def distillation(self, outputs: Tensor, teacher: Tensor, temperature: float) -> Tensor:
        """Loss against the teacher's outputs (PET's ``soft`` terms)."""
        ...

    def metric(self) -> Metric:
        """A fresh metric of one network's quality, for training and validation logs."""
        ...

    def measurement(self, timesteps: int, horizon: int) -> Measurement:
        """An empty measurement of an SNN at ``T = 1..timesteps`` whose samples settle by
        ``horizon`` (what :func:`spikezip.snn.measure_snn` fills)."""
        ...

    report_type: type[Report]  # the task's part of snn_eval.json


@dataclass(kw_only=True, eq=False)  # equal to its JSON, as a mapping
class Report(Mapping):
    """An SNN's evaluation, as ``snn_eval.json`` holds it: what every task reports (the
    method, ``T_eq``, energy, warnings) and, in each task's subclass, its scores.

    :meth:`to_json` and :meth:`from_json` are the file's format; a report also reads as
    that JSON (``report["t_eq_mean"]``). ``curve()`` is its per-T figure.
    """

    task: ClassVar[str]
    score_name: ClassVar[str]  # the score in log keys: final/qann_acc, final/qann_map50

    method: str = "spikezip"
    exact: bool = True
    t_eq_mean: float | None = None  # None: no sample settled (JSON has no NaN)
    t_eq_max: int = -1
    samples: int = 0
    settled: int = 0
    t_eq_counts: dict[str, int] = field(default_factory=dict)
    timesteps: int = 0
    encoding: str = "even"
    # Steps the method spends on every input before its output counts (pre-simulation,
    # offset detection). They are part of every T: the curve is indexed by the steps a
    # user waits, the first overhead_steps of which give no output.
    overhead_steps: int = 0
    dtype: str = "float32"
    energy: dict | None = None
    feature_maps: dict | None = None
    # An integer SNN's proof over every sample measured (spikezip.snn.prove_bit_exact).
    bit_exact: dict | None = None
    warnings: list[str] = field(default_factory=list)

    def curve(self) -> Curve:
        raise NotImplementedError

    @property
    def ann_score(self) -> float | None:
        """The full-precision ANN's score on the same samples, if it was measured."""
        raise NotImplementedError

    @property
    def qann_score(self) -> float:
        """The score of the ANN the SNN came from (the QANN)."""
        raise NotImplementedError

    def equilibrium(self) -> dict[str, float]:
        """How far from its ANN the SNN is at equilibrium, by name (for loggers)."""
        raise NotImplementedError

    def _equilibrium_text(self) -> str:
        """The SNN's scores at equilibrium and how close to its QANN (for :meth:`summary`)."""
        raise NotImplementedError

    def summary(self, out_dir: str | Path | None = None) -> str:
        """The result for a terminal, a few lines: the ANN's and the QANN's score, the
        SNN's at ``T = 1, 2, 4, 8, 16, 32`` (those measured, and the last T) and at
        equilibrium, ``T_eq``, the energy per inference, the warnings and, with
        ``out_dir``, the files to open."""
        curve = self.curve()
        name = curve.name
        kind = "exact" if self.exact else "approximate by design"
        lines = [f"{self.method} SNN ({kind}), {self.samples} samples, {self.dtype}:"]
        if self.ann_score is not None:
            lines.append(f"  ANN (teacher)   {name} {self.ann_score:.1%}")
        lines.append(f"  QANN            {name} {self.qann_score:.1%}")
        points = dict(zip(curve.timesteps, curve.values, strict=True))
        shown = [t for t in points if t in SUMMARY_TIMESTEPS or t == curve.timesteps[-1]]
        lines.append("  SNN             " + "  ".join(f"T={t} {points[t]:.1%}" for t in shown))
        if self.overhead_steps:
            lines.append(
                f"  latency         each T counts the {self.overhead_steps} steps {self.method} "
                "spends on every input before its output counts (no output before them)"
            )
        if self.encoding == "constant":  # rate coding: the input never stops
            lines.append("  equilibrium     none: the input is fed on every step")
        else:
            lines.append(f"  at equilibrium  {self._equilibrium_text()}")
            t_eq = (
                f"mean {self.t_eq_mean:.2f}, max {self.t_eq_max}"
                if self.t_eq_mean is not None
                else "no sample settled"
            )
            if self.t_eq_max < 0 < self.settled:
                t_eq = f"mean {self.t_eq_mean:.2f} over the samples that settled"
            lines.append(f"  T_eq            {t_eq} ({self.settled}/{self.samples} settled)")
        if self.bit_exact is not None:
            proof = self.bit_exact
            lines.append(
                f"  bit-exact       {proof['bit_exact']}: {proof['samples']} samples, "
                f"{proof['levels_compared']:,} integer neuron levels and "
                f"{proof['outputs_compared']:,} outputs identical to the integer QANN's"
                if proof["bit_exact"]
                else f"  bit-exact       False ({proof['levels_differing']} levels differ)"
            )
        energy = self.energy or {}
        if energy.get("snn_joules"):
            steps = len(energy["snn_joules"])
            lines.append(
                f"  energy          ANN {energy['ann_joules'] * 1e6:.3g} µJ, SNN "
                f"{energy['snn_joules'][-1] * 1e6:.3g} µJ at T={steps} (per inference)"
            )
            if energy.get("accumulating_share"):
                lines.append(
                    f"  accumulating    {energy['accumulating_share']:.1%} of the SNN's "
                    f"operations at T={steps} (dense: LayerNorm, softmax, products, ...)"
                )
        lines += [f"  warning: {warning}" for warning in self.warnings]
        if out_dir is not None:
            out_dir = Path(out_dir)
            lines.append(f"  figure          {out_dir / (curve.stem + '.png')}")
            lines.append(f"  report          {out_dir / 'snn_eval.json'}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        data = {"method": self.method, "exact": self.exact, "task": self.task}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in data and not (f.name == "feature_maps" and value is None):
                data[f.name] = value
        return data

    @classmethod
    def from_json(cls, data: dict, source: str = "snn_eval.json") -> Report:
        """The report ``data`` holds (``source`` names it in errors).

        Raises:
            CheckpointError: keys this report does not have, or its scores missing.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"task"})
        if unknown:
            raise CheckpointError(f"{source}: keys {unknown} are not in a {cls.task} report")
        try:
            return cls(**{k: v for k, v in data.items() if k != "task"})
        except TypeError as err:  # a required score missing
            raise CheckpointError(f"{source} is not a whole {cls.task} report: {err}") from None

    def __getitem__(self, key: str):
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())
