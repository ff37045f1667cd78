"""The paper's Table 3 on one harness: SpikeZIP against every rival conversion method on
the same teachers, data and budget, mean ± std over seeds, and a verdict at every T.

    python train.py -m experiment=fashion_table3 sweep=table3 hydra.sweep.dir=multirun/table3
    python -m spikezip.table3 multirun/table3 --out docs/table3     # make table3 does both

Each run is one row of Table 3 (``ablation=...``: the rows of ``table3`` in
``spikezip/ablations.yaml``) and one ``seed``; the rows of a seed share its teacher (but
SpikeZIP-PR, whose re-routed ResNet has its own). T is the number of steps a user waits
for an output: a method's steps before its output counts (Offset's probe, SRP's
pre-simulation) are part of it (``overhead_steps`` in ``snn_eval.json``).

The verdict at each T compares a SpikeZIP row with every rival, paired by seed, by the
study's one-sided paired t-test at 5% (:class:`spikezip.study.Comparison`): SpikeZIP is
*ahead* at T when it is significantly above every rival, *behind* when some rival is
significantly above it, and *tied within seed noise* otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from spikezip.ablations import TABLE3, Check, Row
from spikezip.compare import RunRecord, find_runs, load_run
from spikezip.errors import SpikeZIPError
from spikezip.io import atomic_write, write_csv
from spikezip.methods import METHODS
from spikezip.plots import plot_mean_curves
from spikezip.study import (
    STEPS,
    T_TEST,
    Comparison,
    Results,
    _at,
    _cell,
    _setup,
    collect,
    missing_runs,
    provenance,
    report_parser,
)
from spikezip.tasks import ClassificationReport

SETTLED = 0.01  # "reaches its accuracy": within 1 point of it, and stays there
SPIKEZIP = ("p", "pr")  # the SpikeZIP rows; every other row is a rival


def settling(report: ClassificationReport) -> tuple[float, int]:
    """``(accuracy, T)``: the SNN's accuracy at the last T, and the first T from which its
    accuracy stays within :data:`SETTLED` of it."""
    accuracy = report.snn_accuracy
    final = accuracy[-1]
    first = len(accuracy)
    for t in range(len(accuracy), 0, -1):
        if abs(accuracy[t - 1] - final) > SETTLED:
            break
        first = t
    return final, first


def rows_of(results: Results) -> list[Row]:
    """The Table 3 rows the sweep has runs of (a residual row only where it ran)."""
    return [row for row in TABLE3 if row.setting in results]


def _by_t(results: Results, setting: str, t: int) -> dict[int, float]:
    return {s: _at(r, t) for s, r in results.get(setting, {}).items()}


def compare_at(results: Results, higher: str, lower: str, t: int) -> Comparison:
    """``higher`` against ``lower`` on the accuracy at ``T = t``, paired by seed."""
    a, b = _by_t(results, higher, t), _by_t(results, lower, t)
    seeds = sorted(a.keys() & b.keys())
    diffs = tuple(a[s] - b[s] for s in seeds if not math.isnan(a[s] - b[s]))
    return Comparison(Check(higher, lower, f"T={t}"), diffs)


def verdict_at(results: Results, spikezip: str, t: int) -> tuple[str, str]:
    """``(verdict, the numbers that decide it)`` of the SpikeZIP row ``spikezip`` against
    every rival at ``T = t``: ahead, behind, or tied within seed noise."""
    rivals = [row.setting for row in rows_of(results) if row.setting not in SPIKEZIP]
    comparisons = [compare_at(results, spikezip, rival, t) for rival in rivals]
    comparisons = [c for c in comparisons if len(c.differences) > 1]
    if not comparisons:
        return "too few seeds", ""
    outcomes = [c.outcome for c in comparisons]
    if any(o == "reversed" for o in outcomes):
        verdict = "behind"
    elif all(o == "holds" for o in outcomes):
        verdict = "ahead of every rival"
    else:
        verdict = "tied within seed noise"

    # The rival with the smallest t decides (the one least significantly beaten); the
    # closest in mean is named too where it is another (a noisier rival may be further).
    def said(c: Comparison) -> str:
        return (
            f"{c.check.lower}, {100 * c.mean:+.1f} ± {100 * c.standard_error:.1f} (± SE) "
            f"points, t = {c.t:.2f} vs {c.critical:.2f} ({c.outcome})"
        )

    deciding = min(comparisons, key=lambda c: c.t)
    closest = min(comparisons, key=lambda c: c.mean)
    numbers = f"decided by {said(deciding)}"
    if closest is not deciding:
        numbers += f"; closest in mean: {said(closest)}"
    behind = [c.check.lower for c in comparisons if c.outcome == "reversed"]
    if behind:
        numbers += f"; significantly behind {', '.join(behind)}"
    return verdict, numbers


def _overhead(reports: Sequence[ClassificationReport]) -> str:
    steps = sorted({r.overhead_steps for r in reports})
    return "/".join(str(s) for s in steps) if steps else "–"


def levels_of(runs: Sequence[RunRecord]) -> dict[str, str]:
    """Each setting's quantization levels, from its runs' ``run_identity.json`` (resolved
    settings): the paths' levels of SpikeZIP (``8,4,2``), a rival's own L, ``–`` for an
    unquantized ANN."""
    levels = {}
    for run in runs:
        setting, identity = run.overrides.get("ablation"), run.path / "run_identity.json"
        if setting in levels or not identity.exists():
            continue
        ids = json.loads(identity.read_text())
        method = METHODS[str(ids.get("method.name", "spikezip"))]
        if method.ensemble:
            levels[setting] = ",".join(str(n) for n in ids["pet.levels"])
        elif method.without_levels:
            levels[setting] = "–"
        else:
            own = ids.get("method.levels")
            levels[setting] = str(own if own is not None else ids["pet.levels"][0])
    return levels


def table(results: Results, levels: dict[str, str] | None = None) -> str:
    """Table 3's layout: each row a method, each cell mean ± std over its seeds (%);
    ``levels``: the L of each setting (:func:`levels_of`)."""
    levels = levels or {}
    head = ["method", "L", "seeds", "ANN", "QANN / ANN fine-tuned", "acc. (last T)"]
    head += ["T reaching it"]
    head += [f"T={t}" for t in STEPS] + ["steps before output"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows_of(results):
        reports = list(results[row.setting].values())
        settled = [settling(r) for r in reports]
        cells = [row.label, levels.get(row.setting, "?"), str(len(reports))]
        cells.append(_cell([r.ann_accuracy for r in reports if r.ann_accuracy is not None]))
        cells.append(_cell([r.qann_accuracy for r in reports]))
        cells.append(_cell([acc for acc, _ in settled]))
        cells.append(_cell([float(t) for _, t in settled], scale=1.0, digits=1))
        cells += [_cell([_at(r, t) for r in reports]) for t in STEPS]
        cells.append(_overhead(reports))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latency_notes(results: Results) -> list[str]:
    """How each method's T is counted (:attr:`spikezip.methods.Method.latency`)."""
    notes = []
    for row in rows_of(results):
        method = next(iter(results[row.setting].values())).method
        notes.append(f"- **{row.label}** (`method={method}`): {METHODS[method].latency}.")
    return notes


def write_report(
    sweep: str | Path,
    out_dir: str | Path,
    command: str,
    wall_time: str | None = None,
    note: str | None = None,
) -> list[tuple[str, int, str, str]]:
    """``README.md``, ``table3.csv`` and ``acc_vs_timestep.png`` of the sweep in ``sweep``;
    returns the verdicts ``(SpikeZIP row, T, verdict, numbers)``."""
    sweep, out_dir = Path(sweep), Path(out_dir)
    runs = [load_run(p) for p in find_runs([sweep])]
    results, missing = collect(runs)
    if not results:
        raise SpikeZIPError(f"{sweep} holds no finished Table 3 runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    header = ["setting", "seed", "method", "ann_accuracy", "qann_accuracy", "overhead_steps"]
    header += [f"snn_T{t}" for t in STEPS] + ["final", "t_reaching_final"]
    csv_rows = []
    for row in rows_of(results):
        for seed, r in sorted(results[row.setting].items()):
            final, first = settling(r)
            csv_rows.append(
                [row.setting, seed, r.method, r.ann_accuracy, r.qann_accuracy, r.overhead_steps]
                + [_at(r, t) for t in STEPS]
                + [final, first]
            )
    write_csv(out_dir / "table3.csv", header, csv_rows)
    teachers = [r.ann_accuracy for r in results.get("p", {}).values() if r.ann_accuracy]
    curves = {
        row.label: [r.snn_accuracy for r in results[row.setting].values()]
        for row in rows_of(results)
    }
    title = "Table 3: accuracy against the steps waited"
    plot_mean_curves(curves, teachers, out_dir / "acc_vs_timestep.png", title)
    verdicts = [
        (row.label, t, *verdict_at(results, row.setting, t))
        for row in rows_of(results)
        if row.setting in SPIKEZIP
        for t in STEPS
    ]
    text = _readme(sweep, runs, results, missing, verdicts, command, wall_time, note)
    atomic_write(out_dir / "README.md", lambda tmp: tmp.write_text(text))
    return verdicts


def _readme(sweep, runs, results, missing, verdicts, command, wall_time, note) -> str:
    parts = [
        "# The paper's Table 3 on one harness: SpikeZIP against every rival method\n",
        *provenance("spikezip.table3", sweep, runs, results, command, wall_time, note),
        f"Setup: {_setup(runs)} Every method fine-tunes the same teacher of its seed with the "
        "same loss, epochs and optimizer (SpikeZIP-PR: its re-routed teacher), and is measured "
        "on the same test images at every T. L is the quantization level each method is "
        "fine-tuned at: SpikeZIP's paths', each rival's own (its paper's for the dataset).\n",
        "T is the number of steps a user waits for an answer: a method's steps before its "
        "output counts are part of it, and give no output (the prediction is then the first "
        "class). Every cell is mean ± standard deviation (± std) over the seeds, in %; "
        f"'acc. (last T)' is the accuracy at the last T simulated, 'T reaching it' the "
        f"first T from which the accuracy stays within {100 * SETTLED:.0f} point of it. A "
        f"verdict compares a SpikeZIP row with every rival at one T, paired by seed, by "
        f"{T_TEST}: ahead when it is significantly above every rival, "
        "behind when some rival is significantly above it, tied within seed noise "
        "otherwise.\n",
    ]
    parts += missing_runs(missing)
    parts += ["## Table 3\n", table(results, levels_of(runs))]
    parts.append("![accuracy against T](acc_vs_timestep.png)\n")
    parts.append("## Verdict: where SpikeZIP stands at each T\n")
    parts.append("| SpikeZIP | T | verdict | the numbers that decide it |\n|---|---|---|---|")
    parts += [f"| {label} | {t} | **{v}** | {numbers} |" for label, t, v, numbers in verdicts]
    parts += ["", "## How each method's T is counted\n", *latency_notes(results), ""]
    parts.append("Per-run numbers: `table3.csv`.\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    command = "python train.py -m experiment=fashion_table3 sweep=table3"
    args = report_parser(__doc__, "docs/table3", command).parse_args(argv)
    try:
        verdicts = write_report(args.sweep, args.out, args.command, args.wall_time, args.note)
    except SpikeZIPError as err:
        raise SystemExit(f"Error: {err}") from None
    for label, t, verdict, _ in verdicts:
        print(f"{label:>12}  T={t:<3} {verdict}")
    print(f"table, figure and README.md in {args.out}")


if __name__ == "__main__":
    main()
