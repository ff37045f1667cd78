"""The experiment framework: configs compose, train / convert / evaluate run and resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException

from spikezip.artifacts import CheckpointError, load_qann, load_snn
from spikezip.config import ConfigError, register_configs, validate
from spikezip.conversion import NotEquivalentError, convert_file
from spikezip.evaluation import evaluate_file

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
register_configs()


def _compose(name="train", overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [
        f"{g}={o}"
        for g in ("task", "data", "model", "teacher", "variant", "trainer", "logger", "experiment")
        for o in _options(g)
    ],
)
def test_every_config_option_composes_and_validates(override):
    detection = ["data=mnist_detection", "data=voc", "data=coco", "model=yolov3"]
    extra = {
        **{o: ["task=detection", o] for o in detection},  # a detector on detection data
        "model=yolov3_tiny": ["task=detection"],
        "model=torchvision": ["data=cifar10"],  # torchvision's classifiers take RGB
        "teacher=checkpoint": ["teacher.checkpoint=x.ckpt"],
        "teacher=pretrained": ["data=imagenet", "model=resnet18"],  # ImageNet weights
        "variant=r": ["model=resnet20"],  # re-routing needs a ResNet
        "variant=pr": ["model=resnet20"],
    }.get(override, [])
    cfg = _compose(overrides=[override, *extra])
    validate(cfg)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["data=mnist_detection"], "task=classification needs a classification dataset"),
        (["task=detection", "model=small"], "task=detection needs a detection dataset"),
        (["task=detection", "data=mnist5k"], "got data=mnist5k model=yolov3_tiny"),
        (["data.image_size=64"], "image_size applies to the detection datasets"),
        (["task=detection", "data=voc", "data.train_split=2007-trainvall"], "YEAR-SET"),
        (["task=detection", "data=voc", "data.val_split=2007-test+2012-val"], "one image set"),
        (["task=detection", "data.train_split=train2017"], "applies to voc and coco"),
        (["model=torchvision", "data=cifar10", "model.name=resnet5"], "no classifier 'resnet5'"),
        (["model=torchvision", "data=cifar10", "model.name=resnet5"], "list_models"),
        (["model=torchvision"], "take RGB images; data=mnist5k has 1"),
        (["model=torchvision", "data=cifar10", "model.width=0.5"], "as torchvision defines"),
        (["model.name=resnet5"], "model.name='resnet5' is not valid.*model=torchvision"),
    ],
)
def test_a_task_needs_its_kind_of_data_and_model(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(_compose(overrides=overrides))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["variant=r"], "model.rcr=true re-routes residual connections"),
        (["teacher.epochs=0"], "teacher.epochs must be > 0"),
    ],
)
def test_settings_that_would_be_silently_ignored_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(_compose(overrides=overrides))


# What a sweep needs beside it (R and PR re-route residual connections: a ResNet).
SWEEP_WITH = {
    "study": ["experiment=fashion_study"],
    "table3": ["experiment=fashion_table3"],
    "variants": ["model=resnet20"],
}


# The two largest sweeps (tens of jobs each) compose in test-all.
HEAVY_SWEEPS = ("study", "table3")


@pytest.mark.parametrize(
    "sweep",
    [
        pytest.param(s, marks=pytest.mark.slow) if s in HEAVY_SWEEPS else s
        for s in _options("sweep")
    ],
)
def test_every_sweep_composes(sweep):
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    with_ = SWEEP_WITH.get(sweep, [])
    jobs = []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={sweep}", *with_], return_hydra_config=True)
        parser = OverridesParser.create()
        loader = GlobalHydra.instance().config_loader()
        for key, values in cfg.hydra.sweeper.params.items():
            override = parser.parse_override(f"{key}={values}")
            if isinstance(override.value(), Glob):  # every option of a group: ablation=glob(*)
                values = override.value().filter(loader.get_group_options(key))
            else:
                values = list(override.sweep_string_iterator())
            jobs += [f"{key}={value}" for value in values]
    assert cfg.hydra.sweeper.params  # the swept axes
    for job in jobs:
        # Every job of the sweep composes and passes the schema's checks.
        validate(_compose(overrides=[*with_, job]))


def test_convert_and_evaluate_configs_compose():
    assert validate(_compose("convert", ["qann=x.ckpt"])).encoding == "even"
    cfg = validate(_compose("evaluate", ["snn.path=x.pt", "data=digits"]))
    assert cfg.snn.timesteps == 32 and cfg.data.name == "digits" and cfg.snn.path == "x.pt"
    train = validate(_compose())
    # One default for each setting, shared by every entry point that has it.
    assert (
        cfg.snn.max_timesteps
        == train.snn.max_timesteps
        == validate(_compose("convert", ["qann=x.ckpt"])).max_timesteps
    )


@pytest.mark.parametrize(
    "override, error, match",
    [
        ("pet.levels=foo", ConfigCompositionException, "pet.levels"),
        ("data=cifar1000", MissingConfigException, "data/cifar1000"),
        ("pet.alpha=-1", ConfigError, r"pet.alpha must be >= 0, got -1"),
        # Closed sets are the schema's: refused at composition, with the allowed values.
        ("pet.sub_label=hardd", ConfigCompositionException, r"expected one of \[soft, hard, mixed"),
        ("snn.encoding=rate", ConfigCompositionException, r"full_key: snn.encoding"),
        ("pet.levels=[2,8]", ConfigError, r"pet.levels must decrease strictly"),
        ("pet.levels=[8,0]", ConfigError, r"pet.levels must be"),
        ("pet.weight_bits=1", ConfigError, r"pet.weight_bits must be an integer from 2 to 16"),
        ("pet.weight_bits=8 method=qcfs", ConfigError, r"method=qcfs is approximate"),
        ("pet.weight_bits=8 task=detection", ConfigError, r"needs images stored as integer"),
        ("trainer.devices=1", None, None),
    ],
)
def test_bad_overrides_fail_with_the_key(override, error, match):
    if error is None:
        validate(_compose(overrides=override.split()))
        return
    with pytest.raises(error) as info:
        validate(_compose(overrides=override.split()))
    text = str(info.value) + str(info.value.__cause__ or "")
    assert match.replace("\\", "") in text or __import__("re").search(match, text), text


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    from spikezip.lit.pipeline import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = _compose(overrides=["data=digits", "trainer=debug", "snn.feature_maps=true"])
    summary = train(cfg, run_dir)
    return run_dir, summary


def test_train_end_to_end_writes_every_artifact(debug_run):
    run_dir, summary = debug_run
    for name in ["teacher.ckpt", "qann.ckpt", "snn.pt", "snn_eval.json", "equivalence.json",
                 "acc_vs_timestep.csv", "acc_vs_timestep.png", "t_eq_hist.png", "energy.png",
                 "hardware.json", "hardware.png", "feature_maps.csv", "feature_maps.png",
                 "logs/pet/metrics.csv", "pet_snn/acc_vs_timestep.csv"]:  # fmt: skip
        assert (run_dir / name).is_file(), name
    data = json.loads((run_dir / "snn_eval.json").read_text())
    for key in ["qann_accuracy", "snn_accuracy", "t_eq_mean", "t_eq_max", "agreement", "energy"]:
        assert key in data
    assert len(data["snn_accuracy"]) == 8  # trainer=debug: snn.timesteps=8
    assert data["agreement"] == 1.0 and data["snn_accuracy"][-1] == data["qann_accuracy"]
    assert data["t_eq_max"] >= 8
    energy = data["energy"]
    assert len(energy["sop"]) == 8 and energy["ann_flops"] > 0 and energy["snn_joules"][-1] > 0
    assert json.loads((run_dir / "equivalence.json").read_text())["equivalent"] is True
    assert summary == data
    hardware = json.loads((run_dir / "hardware.json").read_text())
    assert hardware["samples"] == data["samples"]
    assert hardware["network"]["t_eq"]["counts"] == data["t_eq_counts"]
    assert [e["sops"] for e in hardware["layers"]] == list(energy["sop_per_layer"].values())


def test_an_export_the_network_cannot_have_is_refused_before_any_work(debug_run, tmp_path):
    run_dir, _ = debug_run
    qann = f"qann={run_dir / 'qann.ckpt'}"
    with pytest.raises(ConfigError, match="export=integer needs an integer QANN"):
        convert_file(_compose("convert", [qann, f"out_dir={tmp_path}", "export=integer"]))
    with pytest.raises(ConfigError, match="NIR cannot express"):
        convert_file(_compose("convert", [qann, f"out_dir={tmp_path}", "export=nir"]))
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_an_integer_run_is_bit_exact_and_exports_what_numpy_runs(tmp_path):
    from spikezip.export import reference
    from spikezip.lit.pipeline import train

    # The demo (small CNN, MNIST-5k), trained briefly (trainer=debug), on integer weights.
    run_dir = tmp_path / "run"
    report = train(_compose(overrides=["trainer=debug", "pet.weight_bits=8"]), run_dir)
    proof = report["bit_exact"]
    samples = report["samples"]  # every sample measured (trainer=debug: one batch)
    assert proof["bit_exact"] and proof["samples"] == samples > 0
    assert proof["levels_compared"] == samples * proof["neurons_per_sample"] == samples * 37760
    equivalence = json.loads((run_dir / "equivalence.json").read_text())
    assert equivalence["bit_exact"] and equivalence["bit_exact_check"]["samples"] == samples
    hardware = json.loads((run_dir / "hardware.json").read_text())
    assert hardware["integer"] and all(e["membrane_bits"] for e in hardware["layers"])
    # The saved files rebuild the integer networks, and the export runs in NumPy.
    convert = [f"qann={run_dir / 'qann.ckpt'}", f"out_dir={tmp_path / 'c'}", "export=integer"]
    result = convert_file(_compose("convert", convert))
    # The NumPy simulator gives the torch SNN's outputs at T = 1..32 and at equilibrium.
    assert result["bit_exact"] and reference.check(result["export"]) == 0
    summary = evaluate_file(_compose("evaluate", [f"snn.path={run_dir / 'snn.pt'}", "data=mnist5k",
                                                  f"+out_dir={tmp_path / 'eval'}"]))  # fmt: skip
    assert summary["bit_exact"]["bit_exact"] and summary["dtype"] == "float64"


@pytest.mark.slow
def test_a_qcfs_run_exports_to_nir(tmp_path):
    import nir

    from spikezip.export.nir import simulate_nir
    from spikezip.lit.pipeline import train

    run_dir = tmp_path / "run"
    train(_compose(overrides=["data=digits", "trainer=debug", "method=qcfs"]), run_dir)
    convert = [f"qann={run_dir / 'qann.ckpt'}", f"out_dir={tmp_path / 'c'}", "export=nir"]
    result = convert_file(_compose("convert", convert))
    snn, _, meta = load_snn(tmp_path / "c" / "snn.pt")
    x = torch.randn(2, *meta["input_shape"], dtype=torch.float64)
    graph = nir.read(result["export"])
    assert torch.allclose(simulate_nir(graph, x, 8), snn.double().simulate(x, 8), atol=1e-12)


def test_convert_and_evaluate_round_trip(debug_run, tmp_path):
    run_dir, _ = debug_run
    report = convert_file(
        _compose("convert", [f"qann={run_dir / 'qann.ckpt'}", f"out_dir={tmp_path}"])
    )
    assert report["equivalent"] and (tmp_path / "snn.pt").is_file()
    assert report["inputs"] == "digits validation images"
    snn, qann, meta = load_snn(tmp_path / "snn.pt")
    original, _, _ = load_snn(run_dir / "snn.pt")
    x = torch.randn(4, *meta["input_shape"])
    assert torch.equal(snn.simulate(x, 12), original.simulate(x, 12))
    cfg = _compose("evaluate", [f"snn.path={tmp_path / 'snn.pt'}", "data=digits", "snn.timesteps=6",
                                f"+out_dir={tmp_path / 'eval'}", "snn.dtype=float64"])  # fmt: skip
    summary = evaluate_file(cfg)
    assert len(summary["snn_accuracy"]) == 6 and summary["agreement"] == 1.0
    assert (tmp_path / "eval" / "snn_eval.json").is_file()
    # An SNN converted with another encoding keeps it unless snn.encoding says otherwise.
    once_dir = tmp_path / "once"
    convert_file(
        _compose(
            "convert", [f"qann={run_dir / 'qann.ckpt'}", f"out_dir={once_dir}", "encoding=once"]
        )
    )
    once = evaluate_file(
        _compose("evaluate", [f"snn.path={once_dir / 'snn.pt'}", "data=digits", "snn.timesteps=6"])
    )
    assert once["encoding"] == "once" and once["agreement"] == 1.0
    with pytest.raises(ConfigError, match="takes inputs \\[1, 8, 8\\] but data=mnist5k"):
        evaluate_file(_compose("evaluate", [f"snn.path={tmp_path / 'snn.pt'}", "data=mnist5k"]))


def test_convert_refuses_a_non_equivalent_snn(debug_run, tmp_path, monkeypatch):
    import spikezip.methods.spikezip as methods

    run_dir, _ = debug_run
    real = methods.to_snn

    def broken(qann, encoding="even"):
        snn = real(qann, encoding)
        for neuron in snn.neurons.values():
            neuron.threshold *= 1.25  # a threshold that is not the Q-ReLU scale
        return snn

    monkeypatch.setattr(methods, "to_snn", broken)
    with pytest.raises(NotEquivalentError, match="not equivalent"):
        convert_file(_compose("convert", [f"qann={run_dir / 'qann.ckpt'}", f"out_dir={tmp_path}"]))
    assert not (tmp_path / "snn.pt").exists()  # nothing half-written as a result
    assert json.loads((tmp_path / "equivalence.json").read_text())["equivalent"] is False


def test_missing_or_corrupt_artifacts_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_qann(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_snn(bad)
    torch.save({"format": "spikezip-qann/1"}, tmp_path / "q.ckpt")
    with pytest.raises(CheckpointError, match="not a SpikeZIP SNN file"):
        load_snn(tmp_path / "q.ckpt")


def test_wandb_logger_runs_one_run_per_job(tmp_path, monkeypatch):
    import spikezip.lit.pipeline as pipeline

    monkeypatch.setenv("WANDB_MODE", "disabled")
    made, finished, logged = [], [], []

    class Recording(pipeline.WandbLogger):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append(kwargs)

        def log_metrics(self, metrics, step=None):
            logged.append(dict(metrics))
            super().log_metrics(metrics, step)

    probe = pipeline.WandbLogger(mode="disabled").experiment
    run_type = type(probe)
    probe.finish()  # else the pipeline's logger would reuse this run
    real_finish = run_type.finish
    monkeypatch.setattr(
        run_type, "finish", lambda self, *a, **k: (finished.append(1), real_finish(self, *a, **k))
    )
    monkeypatch.setattr(pipeline, "WandbLogger", Recording)
    curves = []
    monkeypatch.setattr(
        pipeline, "log_curve", lambda logger, curve, key: curves.append((key, curve.values))
    )
    cfg = _compose(overrides=["data=digits", "trainer=debug", "logger=wandb"])
    assert cfg.logger.wandb_mode == "offline"  # offline unless the user says online
    pipeline.train(cfg, tmp_path)
    assert len(made) == 1 and made[0]["mode"] == "disabled"  # WANDB_MODE wins over the config
    assert finished == [1]  # closed at the end of the job: the next job gets its own run
    keys = set().union(*logged)
    assert {"teacher/val/acc", "val/acc_l8", "snn/acc_t001", "final/agreement"} <= keys
    summary = json.loads((tmp_path / "snn_eval.json").read_text())
    assert curves == [("final/acc_vs_timestep", summary["snn_accuracy"])]  # the final curve
    assert (tmp_path / "logs" / "pet" / "metrics.csv").is_file()  # CSV is always kept


@pytest.mark.slow  # tests/test_compare.py runs a four-job sweep in the fast suite
def test_multirun_sweep_runs_every_job(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "pet.levels=[4,2],[4]", "data=digits",
         "trainer=debug", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for job in ("0", "1"):
        assert json.loads((tmp_path / job / "snn_eval.json").read_text())["agreement"] == 1.0
    assert "pet.levels=[4]" in (tmp_path / "1" / ".hydra" / "overrides.yaml").read_text().replace(
        " ", ""
    )


def test_reading_and_writing_run_files_needs_no_training_or_plotting_code():
    code = (
        "import sys, spikezip.artifacts\n"
        "loaded = [m for m in sys.modules if m.startswith(('spikezip.pet', 'spikezip.lit',"
        " 'matplotlib', 'lightning', 'hydra'))]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_fashion_mnist_subsets_are_settings_that_travel_with_the_qann(tmp_path):
    cfg = validate(_compose(overrides=["data=fashion_mnist", "data.train_size=500", "seed=1"]))
    assert cfg.data.source() == {
        "name": "fashion_mnist", "root": "data", "seed": 0, "train_size": 500, "val_size": None,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="data.val_size"):
        validate(_compose(overrides=["data.val_size=0"]))
