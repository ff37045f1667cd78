"""What a run tells its user: the summary at the end of train.py, convert.py and
evaluate.py, each Lightning line once, none of its noise, everything in train.log."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEBUG = ["data=digits", "trainer=debug"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}


def _script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
    )


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("debug_run")
    result = _script("train.py", *DEBUG, f"hydra.run.dir={run_dir}", cwd=run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir, result


def test_train_py_ends_with_the_summary_of_its_run(debug_run):
    run_dir, result = debug_run
    out = result.stdout
    summary = out[out.index("Run finished:") :]
    lines = summary.splitlines()
    assert lines[0] == f"Run finished: {run_dir}"
    assert lines[1].startswith("spikezip SNN (exact), 359 samples, float32:")
    labels = [line.split()[0] for line in lines[2:] if line.startswith("  ")]
    assert labels[:6] == ["ANN", "QANN", "SNN", "at", "T_eq", "energy"]
    # trainer=debug simulates T = 1..8: the summary shows 1, 2, 4, 8 and equilibrium.
    snn = next(line for line in lines if line.startswith("  SNN"))
    assert re.fullmatch(r"  SNN +T=1 [\d.]+%  T=2 [\d.]+%  T=4 [\d.]+%  T=8 [\d.]+%", snn), snn
    assert re.search(r"at equilibrium +accuracy [\d.]+%, agreement with the QANN 100.0%", summary)
    assert re.search(r"T_eq +mean [\d.]+, max \d+ \(359/359 settled\)", summary)
    assert re.search(r"energy +ANN [\d.]+ µJ, SNN [\d.]+ µJ at T=8", summary)
    assert f"figure          {run_dir / 'acc_vs_timestep.png'}" in summary
    assert (run_dir / "acc_vs_timestep.png").is_file()
    # The summary's numbers are the report's, its warnings too.
    report = json.loads((run_dir / "snn_eval.json").read_text())
    assert f"QANN            accuracy {report['qann_accuracy']:.1%}" in summary
    assert f"accuracy {report['snn_accuracy_eq']:.1%}, agreement" in summary
    assert all(f"  warning: {w}" in summary for w in report["warnings"])


def test_each_lightning_line_once_and_none_of_its_noise(debug_run):
    run_dir, result = debug_run
    console = result.stdout + result.stderr
    assert console.count("GPU available: False") == 2  # one per stage (teacher, PET)
    assert console.count("`Trainer.fit` stopped") == 2
    assert "litlogger" not in console and "Tip:" not in console
    assert "LeafSpec" not in console and "deprecated" not in console
    assert "FLOPs" not in console and "Flops" not in console
    assert console.count("Trainable params") == 2  # the model summary, once per stage
    log = (run_dir / "train.log").read_text()
    # Everything the console showed is in train.log: Lightning's lines, the summary.
    assert log.count("GPU available: False") == 2 and log.count("Trainable params") == 2
    assert f"Run finished: {run_dir}" in log and "  T_eq  " in log


def test_convert_and_evaluate_end_with_their_summaries(debug_run, tmp_path):
    run_dir, _ = debug_run
    from omegaconf import OmegaConf

    from spikezip.conversion import conversion_summary, convert_file
    from spikezip.evaluation import evaluate_file, evaluation_dir

    cfg = OmegaConf.create({"qann": str(run_dir / "qann.ckpt"), "out_dir": str(tmp_path)})
    text = conversion_summary(convert_file(cfg), tmp_path)
    lines = text.splitlines()
    assert re.fullmatch(
        r"spikezip SNN equivalent to its QANN \(on 16 digits validation images in "
        r"float64, even encoding\):",
        lines[0],
    ), lines[0]
    assert "  neuron levels   0 differ, over 3 neuron layers" in lines
    assert re.search(r"argmax agreement 100.0%", text)
    assert f"SNN             {tmp_path / 'snn.pt'}" in text

    cfg = OmegaConf.create(
        {
            "snn": {"path": str(tmp_path / "snn.pt"), "timesteps": 4, "eval_batches": 1},
            "data": {"name": "digits"},
            "trainer": {"enable_progress_bar": False},
        }
    )
    summary = evaluate_file(cfg).summary(evaluation_dir(cfg))
    assert "  SNN             T=1 " in summary and "T=4 " in summary
    assert str(tmp_path / "eval_digits" / "acc_vs_timestep.png") in summary
    assert "ANN (teacher)" not in summary  # evaluate.py has no teacher to measure


@pytest.mark.slow
def test_convert_py_and_evaluate_py_print_their_summaries(debug_run, tmp_path):
    run_dir, _ = debug_run
    converted = _script("convert.py", f"qann={run_dir / 'qann.ckpt'}", f"out_dir={tmp_path}",
                        f"hydra.run.dir={tmp_path}", cwd=tmp_path)  # fmt: skip
    assert converted.returncode == 0, converted.stderr[-2000:]
    assert "spikezip SNN equivalent to its QANN" in converted.stdout
    evaluated = _script("evaluate.py", f"snn.path={tmp_path / 'snn.pt'}", "data=digits",
                        "snn.timesteps=4", "snn.eval_batches=1", f"hydra.run.dir={tmp_path}",
                        cwd=tmp_path)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "  SNN             T=1 " in evaluated.stdout and "  T_eq  " in evaluated.stdout


def test_a_summary_shows_every_warning_and_what_rate_coding_lacks():
    from spikezip.tasks.classification import ClassificationReport

    report = ClassificationReport(
        method="rate",
        exact=False,
        encoding="constant",
        samples=10,
        qann_accuracy=0.9,
        snn_accuracy=[0.1 * t for t in range(1, 11)],
        warnings=["first thing", "second thing"],
    )
    summary = report.summary()
    assert summary.splitlines()[0] == "rate SNN (approximate by design), 10 samples, float32:"
    assert "  ANN (teacher)" not in summary  # not measured: not shown
    assert "  SNN             T=1 10.0%  T=2 20.0%  T=4 40.0%  T=8 80.0%  T=10 100.0%" in summary
    assert "  equilibrium     none: the input is fed on every step" in summary
    assert "T_eq" not in summary and "energy" not in summary and "figure" not in summary
    assert summary.endswith("  warning: first thing\n  warning: second thing")
