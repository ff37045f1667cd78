"""Comparing runs: the summary of fabricated runs (numbers in = numbers out), labels by
what differs, failed runs named; a real sweep shares its teacher and summarises itself."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from spikezip.compare import find_runs, labels, load_run, main, summarize

ROOT = Path(__file__).resolve().parents[1]


def _fabricate(path: Path, overrides: list[str], accuracy: list[float], ann: float, qann: float):
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    method = next((o.split("=")[1] for o in overrides if o.startswith("method=")), "spikezip")
    report = {
        "method": method, "exact": method == "spikezip", "task": "classification",
        "ann_accuracy": ann, "qann_accuracy": qann,
        "snn_accuracy": accuracy, "t_eq_mean": 9.5, "t_eq_max": 11, "agreement": 1.0,
        "energy": {"snn_joules": [1e-6 * (t + 1) for t in range(len(accuracy))],
                   "ann_joules": 2e-5},
    }  # fmt: skip
    (path / "snn_eval.json").write_text(json.dumps(report))


def test_summary_of_fabricated_runs_keeps_every_number(tmp_path):
    sweep = tmp_path / "sweep"
    _fabricate(sweep / "0", ["data=digits", "method=spikezip"], [0.5, 0.75, 0.875], 0.9, 0.88)
    _fabricate(sweep / "1", ["data=digits", "method=qcfs"], [0.25, 0.5, 0.625], 0.9, 0.86)
    (sweep / "2" / ".hydra").mkdir(parents=True)  # a job that failed
    OmegaConf.save(
        OmegaConf.create(["data=digits", "method=rate"]), sweep / "2/.hydra/overrides.yaml"
    )
    (sweep / "2" / "failed.json").write_text(json.dumps({"error": "DivergenceError: boom"}))
    rows = summarize([sweep], tmp_path / "out", energy_t=2)
    assert [r["run"] for r in rows] == ["method=spikezip", "method=qcfs", "method=rate"]
    first, second, failed = rows
    assert (first["snn_T1"], first["snn_T2"], first["snn_T3"]) == (0.5, 0.75, 0.875)
    assert (second["ann_accuracy"], second["qann_accuracy"]) == (0.9, 0.86)
    assert first["snn_uJ"] == pytest.approx(2.0) and first["ann_uJ"] == pytest.approx(20.0)
    assert failed["status"] == "failed" and failed["error"] == "DivergenceError: boom"
    with open(tmp_path / "out" / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert table[1]["snn_T3"] == "0.625" and table[2]["status"] == "failed"
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| method=qcfs | qcfs | 90.0 | 86.0 | 25.0 | 50.0 | 62.5 |" in markdown
    assert "failed: DivergenceError: boom" in markdown
    for figure in ("acc_vs_timestep.png", "acc_vs_energy.png"):
        assert (tmp_path / "out" / figure).stat().st_size > 5000


def test_runs_are_found_and_labelled_by_what_differs(tmp_path, capsys):
    _fabricate(tmp_path / "a", ["seed=1", "pet.alpha=0.5"], [0.5], 0.9, 0.8)
    _fabricate(tmp_path / "b", ["seed=1", "pet.alpha=1.0", "+foo=2"], [0.6], 0.9, 0.8)
    runs = [load_run(p) for p in find_runs([tmp_path / "a", tmp_path / "b"])]
    assert labels(runs) == ["pet.alpha=0.5", "pet.alpha=1.0 foo=2"]
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")])
    assert "2 runs" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="holds no runs"):
        main([str(tmp_path / "empty")])


# A 4-job multirun (~15 s): test-all. The summary of runs is checked in-process above.
@pytest.mark.slow
def test_a_sweep_shares_its_teacher_and_summarises_failed_jobs_too(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "data=digits", "trainer=debug",
         "method=spikezip,rate", "pet.optimizer.lr=0.01,1e12", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    # Fine-tuning with lr 1e12 diverges; the sweep goes on, summarises all four, then fails.
    assert result.returncode == 1
    assert "2 of 4 jobs failed" in result.stderr
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    failed = [r["run"] for r in rows if r["status"] == "failed"]
    assert failed == [f"method={m} pet.optimizer.lr=1000000000000.0" for m in ("spikezip", "rate")]
    assert all("DivergenceError" in r["error"] for r in rows if r["status"] == "failed")
    assert [r["status"] for r in rows].count("ok") == 2
    teachers = list((tmp_path / "teachers").glob("*/teacher.ckpt"))
    assert len(teachers) == 1  # trained once, by the first job
    reused = [j for j in "0123" if "teacher: reusing" in (tmp_path / j / "train.log").read_text()]
    assert reused == ["1", "2", "3"]


def test_the_summary_goes_to_wandb(tmp_path, monkeypatch):
    import wandb

    from spikezip.compare import log_to_wandb

    _fabricate(tmp_path / "0", ["method=spikezip"], [0.5, 0.75], 0.9, 0.88)
    _fabricate(tmp_path / "1", ["method=rate"], [0.25, 0.5], 0.9, 0.8)
    rows = summarize([tmp_path], tmp_path)
    logged = []
    real_init = wandb.init

    def init(**kwargs):
        run = real_init(**{**kwargs, "mode": "disabled"})
        monkeypatch.setattr(run, "log", lambda data, **kw: logged.append(data))
        return run

    monkeypatch.setattr(wandb, "init", init)
    log_to_wandb(tmp_path, rows, "spikezip", "offline")
    keys = set().union(*logged)
    assert keys == {"summary", "acc_vs_timestep", "acc_vs_energy"}
    table = next(d["summary"] for d in logged if "summary" in d)
    assert table.get_column("run") == ["method=spikezip", "method=rate"]


def test_the_later_of_a_result_and_a_failure_tells_how_a_run_ended(tmp_path):
    _fabricate(tmp_path / "run", ["seed=1"], [0.5], 0.9, 0.8)
    failed = tmp_path / "run" / "failed.json"
    failed.write_text(json.dumps({"error": "RuntimeError: rerun broke"}))
    done = tmp_path / "run" / "snn_eval.json"
    os.utime(done, ns=(1_000_000_000, 1_000_000_000))
    assert load_run(tmp_path / "run").error == "RuntimeError: rerun broke"
    os.utime(failed, ns=(500_000_000, 500_000_000))  # the rerun after the failure finished
    assert load_run(tmp_path / "run").status == "ok"


def test_a_sweep_whose_summary_fails_exits_with_its_error(tmp_path, monkeypatch, capsys):
    import spikezip.compare
    from spikezip.cli import SweepSummary

    def broken(paths, out_dir):
        raise OSError("disk full")

    monkeypatch.setattr(spikezip.compare, "summarize", broken)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    with pytest.raises(SystemExit) as stop:
        SweepSummary().on_multirun_end(config)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "the summary of the sweep" in err and "disk full" in err
