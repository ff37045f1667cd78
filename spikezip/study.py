"""The ablation study: the paper's Fig. 6 and Table 5 (and the baselines) as tables of
mean ± std over seeds, figures, and a verdict on each of the paper's claims.

    python train.py -m experiment=fashion_study sweep=study hydra.sweep.dir=multirun/study
    python -m spikezip.study multirun/study --out docs/study     # make study does both

Each run of the sweep is one setting (``ablation=...``, see :mod:`spikezip.ablations`) and one
``seed``; the settings of one seed share their teacher. A claim is a set of paired
comparisons: for each seed, the difference between two settings on one measure, judged by
a one-sided paired t-test at 5% (``t = mean / SE`` against Student's t with ``n - 1``
degrees of freedom: 2.92 for 3 seeds). A comparison that expects one setting *above* the
other *holds* when ``t`` exceeds the critical value, is *reversed* when ``-t`` does, and is
*within noise* otherwise; one that expects it *not below* (a cost the paper says is none)
holds when it is not reversed and its mean difference is not negative. A claim is
*reproduced* when all its comparisons hold, *not reproduced* when one is reversed, and
*inconclusive* otherwise.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scipy.stats import t as student_t

from spikezip.ablations import CLAIMS, PANELS, Check, Claim, Panel
from spikezip.compare import RunRecord, find_runs, load_run
from spikezip.errors import SpikeZIPError
from spikezip.io import atomic_write, write_csv
from spikezip.plots import plot_mean_curves
from spikezip.tasks import ClassificationReport

# Finished runs: each setting's report by seed.
Results = dict[str, dict[int, ClassificationReport]]

STEPS = (1, 2, 4, 8, 16, 32)  # the T columns of the tables
LOW_T = 4  # "small T": the mean SNN accuracy over T = 1 .. LOW_T
ALPHA = 0.05  # one-sided significance of a paired comparison

# What one run is measured by, from its snn_eval.json.
MEASURES = {
    "low_t": f"mean SNN accuracy over T = 1..{LOW_T}",
    "final": "SNN accuracy at the last T (after T_eq)",
    "qann": "QANN (or the method's ANN) accuracy",
    "t_eq": "mean T_eq",
}


def measure(report: ClassificationReport, name: str) -> float:
    """One number of a run (NaN where it has none: T_eq of a rate-coded SNN)."""
    accuracy = report.snn_accuracy
    if name == "low_t":
        return statistics.fmean(accuracy[:LOW_T])
    if name == "final":
        return accuracy[-1]
    if name == "qann":
        return report.qann_accuracy
    if name == "t_eq":
        return math.nan if report.t_eq_mean is None else report.t_eq_mean
    raise KeyError(name)


@dataclass(frozen=True)
class Comparison:
    check: Check
    differences: tuple[float, ...]  # per seed, higher - lower

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences) if self.differences else math.nan

    @property
    def standard_error(self) -> float:
        n = len(self.differences)
        return statistics.stdev(self.differences) / math.sqrt(n) if n > 1 else math.nan

    @property
    def critical(self) -> float:
        """The one-sided 5% critical value of ``t`` for these seeds (2.92 for 3)."""
        n = len(self.differences)
        return float(student_t.ppf(1 - ALPHA, n - 1)) if n > 1 else math.nan

    @property
    def t(self) -> float:
        """``mean / SE``; infinite when every seed gave the same non-zero difference."""
        mean, se = self.mean, self.standard_error
        if se == 0:
            return math.copysign(math.inf, mean) if mean else 0.0
        return mean / se

    @property
    def outcome(self) -> str:
        n = len(self.differences)
        if n < 2 or math.isnan(self.mean):
            return f"too few seeds ({n})"
        t, critical = self.t, self.critical
        if t < -critical:
            return "reversed"
        if t > critical or (self.check.relation == "not_below" and self.mean >= 0):
            return "holds"
        return "within noise"


def compare(results: Results, check: Check) -> Comparison:
    """``check`` over the seeds both settings have (paired: they share a teacher)."""
    higher, lower = results.get(check.higher, {}), results.get(check.lower, {})
    seeds = sorted(higher.keys() & lower.keys())
    diffs = (measure(higher[s], check.measure) - measure(lower[s], check.measure) for s in seeds)
    return Comparison(check, tuple(d for d in diffs if not math.isnan(d)))


def verdict(comparisons: Sequence[Comparison]) -> str:
    outcomes = [c.outcome for c in comparisons]
    if all(o == "holds" for o in outcomes):
        return "reproduced"
    if any(o == "reversed" for o in outcomes):
        return "not reproduced"
    return "inconclusive"


def collect(runs: Sequence[RunRecord]) -> tuple[Results, list[RunRecord]]:
    """Finished runs by ``ablation`` and ``seed``; and the runs that did not finish."""
    results: Results = {}
    missing = []
    for run in runs:
        if run.report is None:
            missing.append(run)
            continue
        ablation = run.overrides.get("ablation")
        if ablation is None:
            raise SpikeZIPError(f"{run.path} has no ablation=... override: not a study run")
        if not isinstance(run.report, ClassificationReport):
            raise SpikeZIPError(
                f"{run.path} is a {run.report.task} run: the study is of classifiers"
            )
        results.setdefault(ablation, {})[int(run.overrides.get("seed", 0))] = run.report
    return results, missing


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def panel_table(panel: Panel, results: Results) -> str:
    """A markdown table: each row a setting, each cell mean ± std over its seeds (%)."""
    head = ["setting", "seeds", "QANN", *[f"T={t}" for t in STEPS], f"T≤{LOW_T} mean", "T_eq"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, ablation in panel.rows:
        reports = list(results.get(ablation, {}).values())
        cells = [label, str(len(reports)), _cell([r.qann_accuracy for r in reports])]
        for t in STEPS:
            cells.append(_cell([_at(r, t) for r in reports]))
        cells.append(_cell([measure(r, "low_t") for r in reports]))
        cells.append(_cell([measure(r, "t_eq") for r in reports], scale=1.0, digits=2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _at(report: ClassificationReport, t: int) -> float:
    accuracy = report.snn_accuracy
    return accuracy[t - 1] if t <= len(accuracy) else math.nan


def claim_lines(results: Results) -> list[tuple[Claim, str, str]]:
    """``(claim, verdict, the numbers that decide it)`` for every claim."""
    lines = []
    for claim in CLAIMS:
        comparisons = [compare(results, check) for check in claim.checks]
        numbers = []
        for c in comparisons:
            scale, unit = (1.0, " steps") if c.check.measure == "t_eq" else (100.0, " points")
            numbers.append(
                f"{c.check.higher} − {c.check.lower} on {c.check.measure}: "
                f"{scale * c.mean:+.2f} ± {scale * c.standard_error:.2f} (± SE){unit}, "
                f"t = {c.t:.2f} vs {c.critical:.2f} (n={len(c.differences)}, {c.outcome})"
            )
        lines.append((claim, verdict(comparisons), "; ".join(numbers)))
    return lines


def _ann_accuracy(results: Results, ablation: str) -> dict[int, float]:
    """Each seed's teacher accuracy in the runs of ``ablation`` (a teacher is shared by the
    settings of a seed that train the same ANN: all but the re-routed ResNets)."""
    by_seed = results.get(ablation, {})
    return {s: r.ann_accuracy for s, r in by_seed.items() if r.ann_accuracy is not None}


def _wall_time(sweep: Path, runs: Sequence[RunRecord]) -> str:
    start = sweep / "multirun.yaml"
    ends = [r.path / "snn_eval.json" for r in runs if (r.path / "snn_eval.json").exists()]
    if not start.exists() or not ends:
        return "unknown"
    seconds = max(e.stat().st_mtime for e in ends) - start.stat().st_mtime
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _setup(runs: Sequence[RunRecord]) -> str:
    """The settings every run shares, read from the first run's composed config."""
    # OmegaConf (Hydra's) loads only where a run's .hydra files are read.
    from omegaconf import OmegaConf

    for run in runs:
        config = run.path / ".hydra" / "config.yaml"
        if config.exists():
            c = OmegaConf.load(config)
            return (
                f"{c.data.name} (train subset {c.data.train_size or 'all'}, test subset "
                f"{c.data.val_size or 'all'}, data seed {c.data.seed}); {c.model.name} at width "
                f"{c.model.width}; teacher {c.teacher.epochs} epochs, fine-tuning "
                f"{c.pet.epochs} epochs ({c.pet.optimizer.name}, lr {c.pet.optimizer.lr}, batch "
                f"{c.data.batch_size}); SNN simulated for T = 1..{c.snn.timesteps}."
            )
    return "unknown (no .hydra/config.yaml in the runs)"


def write_report(
    sweep: str | Path,
    out_dir: str | Path,
    command: str,
    wall_time: str | None = None,
    note: str | None = None,
) -> list[tuple]:
    """Tables, figures, ``study.csv`` and ``README.md`` of the study in ``sweep``."""
    sweep, out_dir = Path(sweep), Path(out_dir)
    runs = [load_run(p) for p in find_runs([sweep])]
    results, missing = collect(runs)
    if not results:
        raise SpikeZIPError(f"{sweep} holds no finished study runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    header = ["ablation", "seed", "method", "ann_accuracy", "qann_accuracy"]
    header += [f"snn_T{t}" for t in STEPS] + ["low_t", "t_eq_mean", "t_eq_max"]
    rows = []
    for ablation, by_seed in sorted(results.items()):
        for seed, r in sorted(by_seed.items()):
            rows.append(
                [ablation, seed, r.method, r.ann_accuracy, r.qann_accuracy]
                + [_at(r, t) for t in STEPS]
                + [measure(r, "low_t"), r.t_eq_mean, r.t_eq_max]
            )
    write_csv(out_dir / "study.csv", header, rows)
    ann = _ann_accuracy(results, "p")
    for panel in PANELS:
        if panel.figure:
            curves = {
                label: [r.snn_accuracy for r in results.get(ablation, {}).values()]
                for label, ablation in panel.rows
            }
            plot_mean_curves(curves, list(ann.values()), out_dir / f"{panel.key}.png", panel.title)
    claims = claim_lines(results)
    text = _readme(sweep, runs, results, missing, claims, ann, command, wall_time, note)
    atomic_write(out_dir / "README.md", lambda tmp: tmp.write_text(text))
    return claims


# How a paired comparison is judged, in the words of the reports.
T_TEST = (
    "a one-sided paired t-test at 5% (t = mean / SE against Student's t with n − 1 degrees "
    "of freedom: 2.92 for 3 seeds)"
)


def provenance(module, sweep, runs, results, command, wall_time, note) -> list[str]:
    """A report's opening paragraphs: what wrote it from which sweep, when, the sweep's
    wall time, and the ``note`` for its reader."""
    seeds = sorted({s for by_seed in results.values() for s in by_seed})
    return [
        f"Written by `python -m {module}` from the sweep "
        f"`{command}` ({len(runs)} runs, seeds {seeds}); generated "
        f"{datetime.now().strftime('%Y-%m-%d')}, wall time of the sweep on the machine that "
        f"ran it (start to last result): {wall_time or _wall_time(sweep, runs)}.\n",
        *([f"{note}\n"] if note else []),
    ]


def missing_runs(missing: Sequence[RunRecord]) -> list[str]:
    """The report's line naming the runs without results, if any."""
    if not missing:
        return []
    names = ", ".join(f"{r.path.name} ({r.status}: {r.error})" for r in missing)
    return [f"**Runs without results** (left out of every table): {names}.\n"]


def report_parser(doc: str, out: str, command: str) -> argparse.ArgumentParser:
    """The command line of a report over a sweep (``python -m spikezip.study`` and
    ``python -m spikezip.table3``): the sweep, ``--out``, ``--command``, ``--wall-time``,
    ``--note``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the sweep directory")
    parser.add_argument("--out", type=Path, default=Path(out), help="default: %(default)s")
    parser.add_argument(
        "--command", default=command, help="the command that ran the sweep, as the report names it"
    )
    parser.add_argument(
        "--wall-time",
        help="the sweep's wall time, when its files no longer show it (they were rewritten "
        "by a rerun); default: from the files",
    )
    parser.add_argument("--note", help="a paragraph for the report's reader (e.g. a rerun)")
    return parser


def _readme(sweep, runs, results, missing, claims, ann, command, wall_time, note) -> str:
    parts = [
        "# The ablation study: the paper's Fig. 6 and Table 5 on Fashion-MNIST\n",
        *provenance("spikezip.study", sweep, runs, results, command, wall_time, note),
        f"Setup: {_setup(runs)} The teacher of each seed is trained once and shared by every "
        "setting of that seed, except SpikeZIP-R and -PR: residual re-routing changes the "
        "ANN itself, so they have a re-routed teacher of their own per seed. Teacher "
        f"(full-precision ANN) accuracy: {_cell(list(ann.values()))}% over the seeds; "
        f"re-routed teacher: {_cell(list(_ann_accuracy(results, 'r').values()))}%.\n",
        "Every table cell is mean ± standard deviation (± std) over the seeds, in % (T_eq in "
        f"time-steps). 'Small T' is the mean SNN accuracy over T = 1..{LOW_T}; 'after T_eq' "
        "is the accuracy at the last T simulated. A claim's comparisons are paired by seed "
        "(the settings of a seed share a teacher) and given as mean difference ± its "
        f"standard error (± SE); each is judged by {T_TEST}. One that "
        "expects a setting above another holds when t exceeds that value, is reversed when "
        "−t does, and is within noise otherwise; one that expects it not below (a cost the "
        "paper says is none) holds when not reversed and its mean difference is not "
        "negative. A claim is reproduced when all its "
        "comparisons hold, not reproduced when one is reversed, and inconclusive otherwise.\n",
    ]
    parts += missing_runs(missing)
    parts.append("## The paper's claims\n")
    parts.append("| claim | verdict | the numbers that decide it |\n|---|---|---|")
    for claim, outcome, numbers in claims:
        parts.append(f"| {claim.text} | **{outcome}** | {numbers} |")
    parts.append("")
    for panel in PANELS:
        parts.append(f"## {panel.title}\n")
        if panel.figure:
            parts.append(f"![{panel.title}]({panel.key}.png)\n")
        parts.append(panel_table(panel, results))
    parts.append("Per-run numbers: `study.csv`.\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    command = "python train.py -m experiment=fashion_study sweep=study"
    args = report_parser(__doc__, "docs/study", command).parse_args(argv)
    try:
        claims = write_report(args.sweep, args.out, args.command, args.wall_time, args.note)
    except SpikeZIPError as err:
        raise SystemExit(f"Error: {err}") from None
    for claim, outcome, _ in claims:
        print(f"{outcome:>15}  {claim.text}")
    print(f"tables, figures and README.md in {args.out}")


if __name__ == "__main__":
    main()
