"""Compare runs: one table and two figures for any set of run directories or sweeps.

    python -m spikezip.compare multirun/2026-12-01/10-00-00        # a whole sweep
    python -m spikezip.compare outputs/a outputs/b --energy-t 8     # any runs

Writes ``summary.csv``, ``summary.md``, ``acc_vs_timestep.png`` (every run, log-scale T,
each ANN's accuracy dashed) and ``acc_vs_energy.png`` (accuracy against energy per
inference). Runs are labelled by the overrides that differ between them, and a run that
failed or never finished is listed as such. A Hydra multirun of ``train.py`` writes this
summary into its sweep directory when its last job ends
(:class:`spikezip.cli.SweepSummary`).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from spikezip.errors import SpikeZIPError
from spikezip.io import CheckpointError, atomic_write, write_csv
from spikezip.plots import plot_accuracy_vs_energy, plot_runs_accuracy
from spikezip.tasks import Report, read_report

log = logging.getLogger(__name__)
FAILED = "failed.json"  # what a job that failed leaves in its directory


@dataclass
class RunRecord:
    """One run directory: its overrides, and its report or why there is none."""

    path: Path
    overrides: dict[str, str]
    report: Report | None
    error: str | None

    @property
    def status(self) -> str:
        if self.report is not None:
            return "ok"
        return "failed" if self.error and not self.error.startswith("unfinished") else "unfinished"


def _is_run(path: Path) -> bool:
    markers = ("snn_eval.json", FAILED, "run_identity.json", ".hydra")
    return any((path / m).exists() for m in markers)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """The run directories named, and those directly inside a sweep directory named."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise SpikeZIPError(f"{path} is not a directory of runs")
        if _is_run(path):
            runs.append(path)
        else:
            inner = sorted((p for p in path.iterdir() if p.is_dir() and _is_run(p)), key=_order)
            if not inner:
                raise SpikeZIPError(f"{path} holds no runs (no snn_eval.json, .hydra/, ...)")
            runs.extend(inner)
    return runs


def _order(path: Path):
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def _overrides(path: Path) -> dict[str, str]:
    file = path / ".hydra" / "overrides.yaml"
    if not file.exists():
        return {}
    # OmegaConf (Hydra's) loads only where a run's .hydra files are read.
    from omegaconf import OmegaConf

    out = {}
    for item in OmegaConf.load(file):
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def load_run(path: str | Path) -> RunRecord:
    path = Path(path)
    report = error = None
    done, failed = path / "snn_eval.json", path / FAILED
    # A directory run twice may hold both: the later attempt says how it ended.
    if done.exists() and not (failed.exists() and _mtime(failed) > _mtime(done)):
        try:
            report = read_report(done)
        except CheckpointError as err:  # a broken or foreign report: listed, not fatal
            error = f"unreadable report: {err}"
    elif failed.exists():
        error = json.loads(failed.read_text()).get("error", "failed")
    else:
        error = "unfinished: no snn_eval.json"
    return RunRecord(path, _overrides(path), report, error)


def labels(runs: list[RunRecord]) -> list[str]:
    """Each run's overrides that differ between the runs (its directory name if none)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.overrides if k not in keys]
    differing = [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]
    names = []
    for run in runs:
        parts = [f"{k}={run.overrides[k]}" for k in differing if k in run.overrides]
        names.append(" ".join(parts) or run.path.name)
    return names


def _steps(timesteps: int) -> list[int]:
    """1, 2, 4, 8, ... up to ``timesteps`` (and ``timesteps`` itself)."""
    steps, t = [], 1
    while t < timesteps:
        steps.append(t)
        t *= 2
    return [*steps, timesteps]


def summarize(
    paths: list[str | Path], out_dir: str | Path, energy_t: int | None = None
) -> list[dict]:
    """Write the comparison of the runs under ``paths`` into ``out_dir``; returns its rows.

    ``energy_t``: the T whose energy per inference the table shows (default: each run's
    last T).
    """
    runs = [load_run(p) for p in find_runs(paths)]
    names = labels(runs)
    curves = {id(r): r.report.curve() for r in runs if r.report}
    kinds = {c.key for c in curves.values()}
    if len(kinds) > 1:
        raise SpikeZIPError(
            "these runs measure different things (classification accuracy and detection "
            "mAP); compare the runs of one task at a time"
        )
    key = kinds.pop() if kinds else "accuracy"  # the score's name in the columns
    longest = max((c.timesteps[-1] for c in curves.values()), default=1)
    steps = _steps(longest)
    rows = []
    for name, run in zip(names, runs, strict=True):
        row: dict = {"run": name, "status": run.status, "directory": str(run.path)}
        report = run.report
        row["method"] = report.method if report else ""
        row[f"ann_{key}"] = report.ann_score if report else None
        row[f"qann_{key}"] = report.qann_score if report else None
        curve = curves.get(id(run))
        score = dict(zip(curve.timesteps, curve.values, strict=True)) if curve else {}
        for t in steps:
            row[f"snn_T{t}"] = score.get(t)
        row["overhead_steps"] = report.overhead_steps if report else None
        row["t_eq_mean"] = report.t_eq_mean if report else None
        row["t_eq_max"] = report.t_eq_max if report else None
        energy = (report.energy or {}).get("snn_joules", []) if report else []
        t = min(energy_t or len(energy), len(energy))
        row["energy_T"] = t or None
        row["snn_uJ"] = energy[t - 1] * 1e6 if t else None
        row["ann_uJ"] = report.energy["ann_joules"] * 1e6 if report and report.energy else None
        row["error"] = run.error or ""
        rows.append(row)
    out_dir = Path(out_dir)
    header = list(rows[0]) if rows else []
    write_csv(out_dir / "summary.csv", header, [[_cell(r[k]) for k in header] for r in rows])
    markdown = _markdown(rows, steps, key)
    atomic_write(out_dir / "summary.md", lambda tmp: tmp.write_text(markdown))
    finished = [(n, r) for n, r in zip(names, runs, strict=True) if r.report]
    if finished:
        scores = [(n, curves[id(r)], r.report.ann_score) for n, r in finished]
        plot_runs_accuracy(scores, out_dir / "acc_vs_timestep.png")
        energy = [r.report.energy for _, r in finished]
        plot_accuracy_vs_energy(
            [(*s, e["snn_joules"], e["ann_joules"]) for s, e in zip(scores, energy, strict=True)],
            out_dir / "acc_vs_energy.png",
        )
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _markdown(rows: list[dict], steps: list[int], key: str = "accuracy") -> str:
    score = "" if key == "accuracy" else f" {key}"  # a detector's: "ANN map50 %"
    head = ["run", "method", f"ANN{score} %", f"QANN{score} %", *[f"T={t}" for t in steps]]
    head += ["steps before output", "T_eq mean/max"]
    head += ["energy (µJ, T)", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t_eq = "" if r["t_eq_mean"] is None else f"{r['t_eq_mean']:.2f} / {r['t_eq_max']}"
        if r["t_eq_mean"] is None and r["status"] == "ok":
            t_eq = "never settles"
        energy = "" if r["snn_uJ"] is None else f"{r['snn_uJ']:.3g} (T={r['energy_T']})"
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}"
        cells = [r["run"], r["method"], _pct(r[f"ann_{key}"]), _pct(r[f"qann_{key}"])]
        overhead = "" if r["overhead_steps"] is None else str(r["overhead_steps"])
        cells += [_pct(r[f"snn_T{t}"]) for t in steps] + [overhead, t_eq, energy, status]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "T counts every step a user waits, a method's steps before its output included "
        "(column 'steps before output': no output during them).",
    ]
    return "\n".join(lines) + "\n"


def log_to_wandb(sweep_dir: Path, rows: list[dict], project: str, mode: str) -> None:
    """The summary table and both figures as a W&B run of their own."""
    # W&B (optional, slow to import) loads only when a run logs to it.
    import wandb

    run = wandb.init(
        project=project,
        name=f"{sweep_dir.name}-summary",
        dir=str(sweep_dir),
        mode=mode,
        job_type="summary",
    )
    columns = list(rows[0])
    table = wandb.Table(columns=columns, data=[[_cell(r[c]) for c in columns] for r in rows])
    run.log({"summary": table})
    for name in ("acc_vs_timestep.png", "acc_vs_energy.png"):
        if (sweep_dir / name).exists():
            run.log({name.removesuffix(".png"): wandb.Image(str(sweep_dir / name))})
    run.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run directories or sweep directories")
    parser.add_argument(
        "--out",
        type=Path,
        help="where the summary goes (default: the one directory given, else ./comparison)",
    )
    parser.add_argument("--energy-t", type=int, help="the T of the energy column")
    args = parser.parse_args(argv)
    out = args.out or (Path(args.paths[0]) if len(args.paths) == 1 else Path("comparison"))
    try:
        rows = summarize(args.paths, out, args.energy_t)
    except SpikeZIPError as err:
        raise SystemExit(f"Error: {err}") from None
    print((out / "summary.md").read_text(), end="")
    print(f"{len(rows)} runs; summary.csv, summary.md and figures in {out}")


if __name__ == "__main__":
    main()
