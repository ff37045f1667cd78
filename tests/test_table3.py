"""Table 3's report (python -m spikezip.table3) on fabricated runs: the table, the steps a
method spends before its output, and the verdict at each T, favourable or not."""

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from spikezip.table3 import main, settling, write_report
from spikezip.tasks import ClassificationReport


def _run(path: Path, setting: str, method: str, seed: int, accuracy, overhead=0):
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create([f"seed={seed}", f"ablation={setting}"]),
                   path / ".hydra" / "overrides.yaml")  # fmt: skip
    report = {"method": method, "task": "classification", "exact": method == "spikezip",
              "ann_accuracy": 0.92, "qann_accuracy": accuracy[-1], "snn_accuracy": accuracy,
              "overhead_steps": overhead, "encoding": "even" if method == "spikezip" else
              "constant"}  # fmt: skip
    (path / "snn_eval.json").write_text(json.dumps(report))


def _sweep(root: Path) -> Path:
    job = 0
    for seed in (0, 1, 2):
        s = seed / 100
        curves = {
            # SpikeZIP-P: behind QCFS at T = 1, tied at T = 2, ahead from T = 4.
            ("p", "spikezip", 0): [0.1 + 2 * s, [0.5, 0.52, 0.48][seed], 0.7] + [0.9] * 29,
            ("qcfs", "qcfs", 0): [0.3 + s, 0.5, 0.6] + [0.8 + s] * 29,
            # Offset: 4 steps before its output (the first class: 10%).
            ("offset", "offset", 4): [0.1] * 4 + [0.85 + s] * 28,
        }
        for (setting, method, overhead), curve in curves.items():
            _run(root / str(job), setting, method, seed, curve, overhead)
            job += 1
    return root


def test_settling_is_the_first_t_from_which_the_accuracy_stays_within_a_point():
    report = ClassificationReport(qann_accuracy=0.9, snn_accuracy=[0.1, 0.895, 0.7, 0.9, 0.905])
    assert settling(report) == (0.905, 4)  # T = 2 came close but did not stay


def _save_config(run: Path, *overrides: str) -> None:
    from hydra import compose, initialize_config_dir

    from spikezip.config import register_configs

    register_configs()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=fashion_table3", *overrides])
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    from spikezip.config import run_identity, validate

    (run / "run_identity.json").write_text(json.dumps(run_identity(validate(cfg)), default=str))


def test_the_report_says_where_spikezip_is_ahead_tied_or_behind(tmp_path, capsys):
    sweep = _sweep(tmp_path / "sweep")
    _save_config(sweep / "1", "ablation=qcfs")  # the composed config names each L
    _save_config(sweep / "2", "ablation=offset")
    verdicts = {
        t: (v, numbers)
        for label, t, v, numbers in write_report(sweep, tmp_path / "out", "make table3")
    }
    assert verdicts[1][0] == "behind" and "significantly behind qcfs" in verdicts[1][1]
    assert verdicts[2][0] == "tied within seed noise"
    assert verdicts[4][0] == verdicts[32][0] == "ahead of every rival"
    assert "offset, +4.0 ± 0.6 (± SE) points" in verdicts[8][1]
    # What decides a verdict is the rival least significantly beaten, not the closest mean.
    for t, (v, numbers) in verdicts.items():
        deciding = numbers.split(";")[0]
        assert deciding.startswith("decided by ")
        if v == "tied within seed noise":
            assert "(holds)" not in deciding, (t, numbers)
    readme = (tmp_path / "out" / "README.md").read_text()
    # Rows in Table 3's order (SpikeZIP first), each with its steps before output.
    assert readme.index("| SpikeZIP-P |") < readme.index("| QCFS |")
    assert readme.index("| QCFS |") < readme.index("| Offset |")
    offset = next(line for line in readme.splitlines() if line.startswith("| Offset |"))
    assert offset.endswith("| 4 |") and "| 10.0 ± 0.0 |" in offset  # T=1..4: no output
    p = next(line for line in readme.splitlines() if line.startswith("| SpikeZIP-P |"))
    assert "| 90.0 ± 0.0 | 4.0 ± 0.0 |" in p  # the accuracy reached, and the first T
    assert "**Offset** (`method=offset`): T includes the rho probe steps" in readme
    assert "| SpikeZIP-PR |" not in readme  # no residual row without its runs
    assert "| SpikeZIP-P | ? | 3 |" in readme  # no .hydra/config.yaml: L unknown
    assert "| QCFS | 4 | 3 |" in readme and "| Offset | 4 | 3 |" in readme  # their papers'
    assert "Setup: fashion_mnist (train subset 3000" in readme
    with open(tmp_path / "out" / "table3.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and {r["overhead_steps"] for r in rows} == {"0", "4"}
    assert (tmp_path / "out" / "acc_vs_timestep.png").stat().st_size > 5000
    main([str(sweep), "--out", str(tmp_path / "again")])
    assert "SpikeZIP-P  T=4   ahead of every rival" in capsys.readouterr().out


def test_a_directory_without_table3_runs_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="holds no runs"):
        main([str(tmp_path / "empty")])
