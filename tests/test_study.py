"""The study report: paired comparisons over seeds, verdicts, tables (numbers in = numbers
out) and figures, on fabricated runs."""

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from spikezip.ablations import CLAIMS, PANELS, SETTINGS, TABLE3, Check
from spikezip.compare import find_runs, load_run
from spikezip.config import validate
from spikezip.study import collect, compare, verdict, write_report
from spikezip.tasks import ClassificationReport


def _run(path: Path, ablation: str, seed: int, accuracy: list[float], qann=0.9, t_eq=9.0):
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create([f"seed={seed}", f"ablation={ablation}"]),
                   path / ".hydra" / "overrides.yaml")  # fmt: skip
    report = {"method": "spikezip", "task": "classification", "ann_accuracy": 0.92 + seed / 100,
              "qann_accuracy": qann, "snn_accuracy": accuracy, "t_eq_mean": t_eq,
              "t_eq_max": 12}  # fmt: skip
    (path / "snn_eval.json").write_text(json.dumps(report))


def _results(rows):
    return {a: {s: ClassificationReport(snn_accuracy=acc, qann_accuracy=0.9, t_eq_mean=9.0)
                for s, acc in by_seed.items()} for a, by_seed in rows.items()}  # fmt: skip


def test_paired_comparisons_hold_reverse_or_stay_within_noise():
    flat = [0.5] * 8
    up = {0: [0.6] * 8, 1: [0.62] * 8, 2: [0.61] * 8}  # +10..12 points on every seed
    noisy = {0: [0.6] * 8, 1: [0.4] * 8, 2: [0.52] * 8}  # +10, -10, +2: no clear sign
    results = _results({"a": up, "b": {s: flat for s in range(3)}, "c": noisy})
    holds = compare(results, Check("a", "b", "low_t"))
    assert holds.differences == pytest.approx((0.1, 0.12, 0.11))
    assert holds.standard_error == pytest.approx(0.01 / 3**0.5)
    assert holds.outcome == "holds"
    assert compare(results, Check("b", "a", "low_t")).outcome == "reversed"
    assert compare(results, Check("c", "b", "final")).outcome == "within noise"
    one_seed = _results({"a": {0: [0.6] * 8}, "b": {0: flat}})
    assert compare(one_seed, Check("a", "b", "low_t")).outcome == "too few seeds (1)"
    assert verdict([holds, holds]) == "reproduced"
    assert verdict([holds, compare(results, Check("b", "a", "low_t"))]) == "not reproduced"
    assert verdict([holds, compare(results, Check("c", "b", "final"))]) == "inconclusive"


def test_three_seeds_are_judged_by_a_one_sided_t_test_not_two_standard_errors():
    flat = {s: [0.5] * 8 for s in range(3)}
    # P - N after T_eq as the committed study measured it: -1.6, -3.1, -7.6 points.
    below = {0: [0.484] * 8, 1: [0.469] * 8, 2: [0.424] * 8}
    results = _results({"n": flat, "p": below})
    cost = compare(results, Check("p", "n", "final"))
    assert cost.mean == pytest.approx(-0.041) and cost.standard_error == pytest.approx(
        0.018, abs=1e-3
    )
    assert cost.mean < -2 * cost.standard_error  # reversed by the normal approximation ...
    assert cost.critical == pytest.approx(2.919986, abs=1e-5)  # Student's t, 2 d.o.f., 5%
    assert cost.t == pytest.approx(-2.27, abs=0.01) and cost.outcome == "within noise"
    # "Costs nothing" (not below): not shown by a negative mean within noise ...
    not_below = compare(results, Check("p", "n", "final", "not_below"))
    assert not_below.outcome == "within noise"
    # ... shown by a mean at or above zero, and reversed by a clear cost.
    assert compare(results, Check("n", "p", "final", "not_below")).outcome == "holds"
    clear = _results({"n": flat, "p": {s: [0.4 - 0.001 * s] * 8 for s in range(3)}})
    assert compare(clear, Check("p", "n", "final", "not_below")).outcome == "reversed"
    with pytest.raises(ValueError, match="above or not_below"):
        Check("p", "n", "final", "at_least")


def test_low_t_is_the_mean_over_the_first_steps_and_t_eq_of_a_rate_snn_is_missing():
    results = {"p": {0: ClassificationReport(snn_accuracy=[0.1, 0.2, 0.3, 0.4, 0.9],
                                             qann_accuracy=0.9, t_eq_mean=3.0)},
               "rate": {0: ClassificationReport(snn_accuracy=[0.0] * 5, qann_accuracy=0.9,
                                                t_eq_mean=None)}}  # fmt: skip
    assert compare(results, Check("p", "rate", "low_t")).differences == pytest.approx((0.25,))
    assert compare(results, Check("p", "rate", "t_eq")).differences == ()


def test_every_claim_and_panel_names_settings_of_the_study_sweep():
    # The sweep runs every option of the group ablation, and those are the plan's settings.
    sweep = OmegaConf.load(Path(__file__).parents[1] / "conf/sweep/study.yaml")
    rivals = {row.setting for row in TABLE3} - {a for p in PANELS for _, a in p.rows}
    excluded = ",".join(sorted(rivals, key=[row.setting for row in TABLE3].index))
    assert str(sweep.hydra.sweeper.params.ablation) == f"glob(*,exclude=[{excluded}])"
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from spikezip.config import register_configs

    register_configs()
    with initialize_config_dir(str(Path(__file__).parents[1] / "conf"), version_base="1.3"):
        settings = set(GlobalHydra.instance().config_loader().get_group_options("ablation"))
        named = {a for p in PANELS for _, a in p.rows}
        named |= {x for c in CLAIMS for check in c.checks for x in (check.higher, check.lower)}
        assert named == settings - rivals and settings == set(SETTINGS)
        table3 = OmegaConf.load(Path(__file__).parents[1] / "conf/sweep/table3.yaml")
        rows = str(table3.hydra.sweeper.params.ablation).split(",")
        assert rows == [row.setting for row in TABLE3]
        # Each setting composes into a valid config of the study.
        for name in ("p", "qcfs", "nmp2", "alpha0.25"):
            cfg = compose("train", overrides=["experiment=fashion_study", f"ablation={name}"])
            validate(cfg)
        assert cfg.pet.alpha == 0.25


def test_the_report_of_fabricated_runs_keeps_every_number(tmp_path):
    sweep = tmp_path / "sweep"
    job = 0
    for seed in (0, 1, 2):
        for ablation, acc, qann in (("p", 0.7, 0.9), ("n", 0.6, 0.89), ("rate", 0.1, 0.88)):
            curve = [acc + seed / 100] * 4 + [qann] * 28
            _run(
                sweep / str(job),
                ablation,
                seed,
                curve,
                qann,
                t_eq=None if ablation == "rate" else 9.0,
            )
            job += 1
    (sweep / str(job) / ".hydra").mkdir(parents=True)  # a job that never finished
    OmegaConf.save(
        OmegaConf.create(["seed=0", "ablation=qcfs"]), sweep / str(job) / ".hydra/overrides.yaml"
    )
    claims = write_report(sweep, tmp_path / "out", "make study")
    outcome = {c.text: v for c, v, _ in claims}
    assert outcome["PET raises the SNN's accuracy at small T (P > N)"] == "reproduced"
    assert outcome["residual re-routing raises the accuracy at small T (R > N)"] == "inconclusive"
    assert outcome["SpikeZIP is ahead of QCFS and rate coding at small T"] == "inconclusive"
    readme = (tmp_path / "out" / "README.md").read_text()
    assert (
        "| SpikeZIP-P | 3 | 90.0 ± 0.0 | 71.0 ± 1.0 | 71.0 ± 1.0 | 71.0 ± 1.0 | 90.0 ± 0.0 |"
        in readme
    )
    assert "| SpikeZIP-N | 3 | 89.0 ± 0.0 | 61.0 ± 1.0 |" in readme
    assert "p − n on low_t: +10.00 ± 0.00 (± SE) points, t = inf vs 2.92 (n=3, holds)" in readme
    # The same final accuracy: "PET costs nothing after T_eq" holds (P - N = 0, not below).
    assert outcome["PET costs nothing after T_eq (P ≥ N at the last T)"] == "reproduced"
    assert "Runs without results" in readme and "9 (unfinished" in readme
    assert (
        "Teacher (full-precision ANN) accuracy: 93.0 ± 1.0% over the seeds; re-routed teacher: –%"
        in readme
    )
    with open(tmp_path / "out" / "study.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and {r["ablation"] for r in rows} == {"p", "n", "rate"}
    for figure in ("fig6a.png", "fig6b.png", "baselines.png"):
        assert (tmp_path / "out" / figure).stat().st_size > 5000


def test_runs_that_are_not_study_runs_are_refused(tmp_path):
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / "snn_eval.json").write_text(
        json.dumps({"task": "classification", "snn_accuracy": [0.5], "qann_accuracy": 0.5})
    )
    with pytest.raises(Exception, match="no ablation=... override"):
        collect([load_run(p) for p in find_runs([tmp_path / "run"])])
