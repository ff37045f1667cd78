"""Runs that survive: real resume after a kill, divergence stopped, bad input named, files
others can read."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from urllib.error import URLError

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

import spikezip.lit.pipeline as pipeline
from spikezip.artifacts import CheckpointError, load_qann, save_qann
from spikezip.config import ConfigError, register_configs, validate
from spikezip.conversion import convert_file
from spikezip.data import DatasetNotFoundError, build_datasets
from spikezip.evaluation import evaluate_snn
from spikezip.io import BusyError, held_lock
from spikezip.lit.guards import DivergenceError
from spikezip.models import small_cnn
from spikezip.quant import to_qann
from spikezip.snn import UnsupportedLayerError, to_snn

ROOT = Path(__file__).resolve().parents[1]
register_configs()
# Two batches per epoch, two epochs per stage, a short simulation.
FAST = ["data=digits", "trainer=debug", "teacher.epochs=2", "pet.epochs=2"]


def _compose(name="train", overrides=()):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _weights(path: Path, key: str = "state_dict") -> dict:
    return torch.load(path, weights_only=True)[key]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Killed(Exception):
    """Stands for a kill: the process dies in the middle of a stage."""


class _Kill(pl.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 1:  # mid-epoch
            raise _Killed


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    return run_dir, pipeline.train(_compose(overrides=FAST), run_dir)


def test_a_killed_run_resumes_at_the_next_epoch_and_ends_with_the_same_artifacts(
    uninterrupted, tmp_path, monkeypatch, caplog
):
    reference, summary = uninterrupted
    real = pipeline.Run.trainer

    def killed_in(stage):
        def trainer(self, name, epochs, callbacks):
            return real(self, name, epochs, [*callbacks, *([_Kill(1)] if name == stage else [])])

        return trainer

    for stage in ("teacher", "pet"):  # killed in the second epoch of each stage in turn
        monkeypatch.setattr(pipeline.Run, "trainer", killed_in(stage))
        with pytest.raises(_Killed):
            pipeline.train(_compose(overrides=FAST), tmp_path)
        last = torch.load(tmp_path / "checkpoints" / stage / "last.ckpt", weights_only=True)
        # The first epoch was checkpointed; nothing of the second one (killed after one step).
        assert last["epoch"] == 0 and last["global_step"] == 2
        assert not (tmp_path / "qann.ckpt").exists()
        assert (tmp_path / "teacher.ckpt").exists() == (stage == "pet")

    monkeypatch.setattr(pipeline.Run, "trainer", real)
    with caplog.at_level("INFO", logger="spikezip.lit.pipeline"):
        resumed = pipeline.train(_compose(overrides=FAST), tmp_path)
    assert "pet: resuming from" in caplog.text and "teacher: using" in caplog.text
    # The same teacher, the same QANN, the same SNN measurements as without the kills.
    for name in ("teacher.ckpt", "qann.ckpt"):
        assert _same_weights(_weights(tmp_path / name), _weights(reference / name)), name
    assert resumed == summary
    assert _weights(tmp_path / "teacher.ckpt", "global_step") == 4  # 2 epochs x 2 batches


# Two train.py processes (~20 s on a 2-core CPU without AVX-512): test-all. The fast suite
# refuses a busy directory through the same command line and checks the run identity
# in-process (test_unused_defaults_are_left_out_of_the_run_identity).
@pytest.mark.slow
def test_a_refused_rerun_leaves_the_run_directory_as_it_was(tmp_path):
    def train(*overrides):
        return subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *FAST, f"hydra.run.dir={tmp_path}",
             "teacher.epochs=1", "pet.epochs=1", *overrides],
            capture_output=True, text=True, cwd=tmp_path,
            env={**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"},
        )  # fmt: skip

    assert train().returncode == 0
    assert "pet.epochs=1" in (tmp_path / ".hydra" / "overrides.yaml").read_text()

    def snapshot():
        return {
            p.relative_to(tmp_path): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in tmp_path.rglob("*")
            if p.is_file()
        }

    before = snapshot()
    refused = train("pet.levels=[4]", "teacher.optimizer.lr=0.01")
    assert refused.returncode == 1
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("Error: this run directory was made with other settings")
    assert "pet.levels: [8, 4, 2] -> [4]" in last_line
    assert "teacher.optimizer.lr: 0.05 -> 0.01" in last_line  # a learning rate counts too
    assert "Traceback" not in refused.stderr
    assert snapshot() == before  # not a byte, not a timestamp changed


def test_a_run_that_made_nothing_is_not_a_run_to_resume(tmp_path):
    missing = _compose(overrides=[*FAST, "data=cifar10", f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(DatasetNotFoundError, match="cifar10 not found"):
        pipeline.train(missing, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no run_identity.json, nothing
    summary = pipeline.train(_compose(overrides=[*FAST, "pet.epochs=1"]), tmp_path)
    assert summary["agreement"] == 1.0


@pytest.mark.parametrize(
    "stage, overrides, match",
    [
        ("teacher", ["teacher.optimizer.lr=1e12"], r"the teacher diverged at step \d+ \(epoch 1\)"),
        # Every step's loss is finite; the weights after the last one are not usable.
        ("teacher", ["teacher.optimizer.lr=1e8"], r"the teacher diverged .*validation metrics"),
        ("pet", ["pet.optimizer.lr=1e8"], r"the PET fine-tuning diverged at step \d+ \(epoch 1\)"),
        ("pet", ["method=qcfs", "pet.optimizer.lr=1e8"], r"the qcfs fine-tuning diverged"),
        ("pet", ["method=rate", "pet.optimizer.lr=1e8"], r"the rate fine-tuning diverged"),
    ],
)
def test_divergence_stops_the_stage_and_saves_nothing_of_it(tmp_path, stage, overrides, match):
    with pytest.raises(DivergenceError, match=match) as info:
        pipeline.train(_compose(overrides=[*FAST, *overrides]), tmp_path)
    message = str(info.value)
    lr = next(o.split("=")[1] for o in overrides if "lr=" in o)
    assert f"{stage}.optimizer.lr={float(lr):g} now" in message and "lower learning rate" in message
    assert not (tmp_path / "checkpoints" / stage / "last.ckpt").exists()
    assert not (tmp_path / "qann.ckpt").exists() and not (tmp_path / "snn.pt").exists()
    assert (tmp_path / "teacher.ckpt").exists() == (stage == "pet")


def test_a_qann_far_below_its_teacher_is_reported(tmp_path, caplog):
    torch.manual_seed(0)
    x = torch.randn(64, 1, 28, 28)
    teacher = small_cnn().eval()
    y = teacher(x).argmax(-1)  # the teacher is right on every sample
    qann = to_qann(small_cnn(), 4)
    qann.train()
    qann(x)  # LSQ scales from the data
    qann.eval()
    metadata = {"arch": {"name": "small", "num_classes": 10}, "input_shape": [1, 28, 28]}
    settings = validate(_compose()).snn
    with caplog.at_level("WARNING", logger="spikezip.evaluation"):
        summary = evaluate_snn(
            to_snn(qann), qann, metadata, [(x, y)], tmp_path, settings, progress=False,
            ann=teacher, max_accuracy_drop=0.05,
        )  # fmt: skip
    assert summary["ann_accuracy"] == 1.0 and summary["qann_accuracy"] < 0.5
    (warning,) = summary["warnings"]
    assert "below its teacher's 100.0%" in warning and warning in caplog.text
    assert json.loads((tmp_path / "snn_eval.json").read_text())["warnings"] == [warning]


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["+foo=1"], r"unknown key foo"),
        (["+pet.alhpa=0.5"], r"unknown key pet.alhpa \(did you mean pet.alpha\?\)"),
        (["pet.levels=[8,8]"], r"pet.levels must decrease strictly.*got \[8, 8\]"),
        (["pet.levels=[2,8]"], r"pet.levels must decrease strictly.*got \[2, 8\]"),
    ],
)
def test_unknown_keys_and_levels_the_method_does_not_allow_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(_compose(overrides=overrides))


@pytest.mark.parametrize(
    "name, content, kind",
    [
        ("notes.txt", "these are my notes, not a network\n", "a text file"),
        ("report.json", '{"equivalent": true}', "a JSON text file"),
        ("empty.ckpt", "", "an empty file"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, name, content, kind):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CheckpointError) as info:
        load_qann(path)
    message = str(info.value)
    assert str(path) in message and kind in message and "expected a file written by" in message
    with pytest.raises(CheckpointError, match=name):
        convert_file(_compose("convert", [f"qann={path}"]))


# A convert.py process (~10 s): test-all; the message itself is checked in-process above.
@pytest.mark.slow
def test_convert_py_names_a_json_file_given_as_a_checkpoint(tmp_path):
    path = tmp_path / "equivalence.json"
    path.write_text('{"equivalent": true}')
    result = subprocess.run(
        [sys.executable, str(ROOT / "convert.py"), f"qann={path}"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: checkpoint {path} is corrupt or not a PyTorch file: it is a JSON text file; "
        "expected a file written by torch.save (teacher.ckpt, qann.ckpt, snn.pt, ...)"
    )
    # Neither a traceback nor torch's advice to load with weights_only=False.
    assert "Traceback" not in result.stderr and "weights_only" not in result.stderr


@pytest.mark.parametrize(
    "name, match",
    [
        ("convert", r"qann is required \(the qann.ckpt to convert"),
        ("evaluate", r"snn.path is required"),
    ],
)
def test_a_missing_required_path_names_the_key(name, match):
    with pytest.raises(ConfigError, match=match):
        validate(_compose(name))


@pytest.mark.parametrize(
    "script, present, absent",
    [
        # Each starts a Python with torch (~10 s): test-all; the usage texts are config
        # (conf/*.yaml), composed in the fast suite by the tests above.
        pytest.param("convert.py", ["Usage: python convert.py qann=PATH", "qann: ???",
                     "max_timesteps"], ["model:", "teacher", "variant"], marks=pytest.mark.slow),
        pytest.param("evaluate.py", ["Usage: python evaluate.py snn.path=PATH", "data: cifar10",
                     "path: ???"], ["model:", "teacher", "variant", "experiment"],
                     marks=pytest.mark.slow),
    ],
)  # fmt: skip
def test_each_script_has_its_own_help(script, present, absent):
    result = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for text in present:
        assert text in result.stdout, text
    for text in absent:
        assert text not in result.stdout, text


class _SortsFeatures(nn.Module):
    def forward(self, x):
        return x.sort(dim=-1).values


def test_to_qann_refuses_what_to_snn_cannot_convert():
    # LayerNorm converts (an accumulating operator); an order does not, and says why.
    with pytest.raises(UnsupportedLayerError, match="'sort'.*an index or an order"):
        to_qann(nn.Sequential(nn.Linear(4, 4), _SortsFeatures(), nn.ReLU()), 8)
    with pytest.raises(UnsupportedLayerError, match="track_running_stats=False"):
        to_qann(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False),
                              nn.ReLU()), 8)  # fmt: skip


def test_a_failed_download_says_how_to_place_the_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        build_datasets("cifar10", tmp_path, download=True)
    message = str(info.value)
    assert "downloading cifar10 from https://" in message and "failed" in message
    assert str(tmp_path / "cifar-10-batches-py") in message and "without data.download" in message


# A subprocess with torch (~7 s); the refused rerun above checks the same last-line path fast.
@pytest.mark.slow
def test_a_config_error_is_the_last_line_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "pet.alpha=-1", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "Error: pet.alpha must be >= 0, got -1.0"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run_identity.json").exists()  # refused before any work


def test_full_errors_keep_their_traceback(monkeypatch):
    from spikezip.cli import report_errors

    def wrong():
        raise ConfigError("pet.alpha must be >= 0, got -1.0")

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        report_errors(wrong)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = save_qann(
            to_qann(small_cnn(), 4), tmp_path / "qann.ckpt",
            arch={"name": "small", "num_classes": 10}, levels=4, input_shape=[1, 28, 28],
        )  # fmt: skip
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_every_file_of_a_run_is_readable_by_others(uninterrupted):
    run_dir, _ = uninterrupted
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"teacher.ckpt", "qann.ckpt", "snn.pt", "snn_eval.json", "last.ckpt"} <= names
    assert {"acc_vs_timestep.csv", "acc_vs_timestep.png", "run_identity.json"} <= names
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_a_quantization_scale_pushed_below_zero_is_divergence(tmp_path):
    from spikezip.lit import PETModule
    from spikezip.lit.guards import DivergenceGuard

    module = PETModule({"name": "small", "num_classes": 10, "width": 0.25})
    guard = DivergenceGuard("PET fine-tuning", key="pet", lr=0.1)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    guard.on_fit_start(trainer, module)
    guard.on_train_batch_end(trainer, module, torch.tensor(1.0), None, 0)  # all is well
    with torch.no_grad():
        module.pet.net.features[2].scales[0].fill_(-3.0)  # finite, but no quantizer
    with pytest.raises(DivergenceError, match=r"steps \{'pet.net.features.2.scales.0': -3.0\}"):
        guard.on_train_batch_end(trainer, module, torch.tensor(1.0), None, 0)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["snn.encoding=constant"], r"snn.encoding=constant feeds input and biases on every step"),
        (["teacher=pretrained"], r"teacher.source=pretrained .* needs data=imagenet"),
        (["snn.energy.joules_per_sop=0"], r"snn.energy.joules_per_sop must be > 0"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_any_work(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(_compose(overrides=overrides))


def test_a_config_without_a_schema_is_checked_as_thoroughly():
    from omegaconf import OmegaConf

    from spikezip.config import TrainConfig

    saved = OmegaConf.create({"pet": {"alpha": -1.0}})  # e.g. a loaded .hydra/config.yaml
    with pytest.raises(ConfigError, match=r"pet.alpha must be >= 0"):
        validate(saved, TrainConfig)
    cfg = validate(OmegaConf.create({"snn": {"energy": {"joules_per_sop": 1e-13}}}), TrainConfig)
    assert cfg.snn.energy.joules_per_sop == 1e-13 and cfg.pet.levels == [8, 4, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_gpu_run_without_cuda_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu but CUDA is not available"):
        pipeline.train(_compose(overrides=[*FAST, "trainer.accelerator=gpu"]), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_run_directory_of_another_version_is_named(uninterrupted):
    from spikezip.config import check_same_run
    from spikezip.io import read_json

    run_dir, _ = uninterrupted
    identity = read_json(run_dir / "run_identity.json")
    check_same_run(identity, validate(_compose(overrides=FAST)))  # the same settings: fine
    identity.pop("format")
    with pytest.raises(ConfigError, match="made by another version of SpikeZIP"):
        check_same_run(identity, validate(_compose(overrides=FAST)))


_Usage = namedtuple("_Usage", "total used free")  # what shutil.disk_usage returns


def _write_then(tmp: Path, error: Exception):
    tmp.write_bytes(b"x" * 4096)  # part of the file, then the disk is full
    raise error


def test_a_full_disk_is_one_line_naming_the_file_the_space_and_the_directory(
    tmp_path, monkeypatch, capsys
):
    from spikezip import io
    from spikezip.cli import report_errors

    target = tmp_path / "teacher.ckpt"
    target.write_bytes(b"previous")
    full = OSError(28, "No space left on device")
    with pytest.raises(io.DiskFullError) as info:
        io.atomic_write(target, lambda tmp: _write_then(tmp, full))
    message = str(info.value)
    assert message.startswith(f"no space left to write {target}: it needs more than 0.0 MB")
    assert f"{tmp_path} has " in message and "MB free" in message
    assert target.read_bytes() == b"previous" and sorted(tmp_path.iterdir()) == [target]
    # torch.save reports a full disk as a RuntimeError of its zip writer, without errno.
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: _Usage(0, 0, 0))
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")
    with pytest.raises(io.DiskFullError, match=f"no space left to write {target}"):
        io.atomic_write(target, lambda tmp: _write_then(tmp, torch_full))
    # Any other failure is not taken for a full disk.
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="unexpected pos"):
        io.atomic_write(target, lambda tmp: _write_then(tmp, torch_full))
    # On the command line: one line, no traceback; also for a write outside spikezip.io.
    monkeypatch.setattr(sys, "exit", lambda code: None)

    def log_write():
        raise OSError(28, "No space left on device", str(tmp_path / "train.log"))

    report_errors(log_write)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"Error: no space left on the device to write {tmp_path / 'train.log'}; free some "
        "space (or move the run directory to a larger disk) and run the same command again"
    ]


def test_a_truncated_epoch_checkpoint_says_how_to_restart_its_stage(uninterrupted, tmp_path):
    import shutil

    reference, _ = uninterrupted
    run_dir = tmp_path / "copy"
    shutil.copytree(reference, run_dir)
    for name in ("qann.ckpt", "snn.pt"):  # a run copied while PET was training
        (run_dir / name).unlink()
    last = run_dir / "checkpoints" / "pet" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        pipeline.train(_compose(overrides=FAST), run_dir)
    message = str(info.value)
    assert f"{last}, the last epoch checkpoint of the PET fine-tuning, is corrupt" in message
    assert f"mv {last} {last}.corrupt" in message and "restarts from its first epoch" in message
    last.rename(last.with_suffix(".ckpt.corrupt"))  # what the message says to do
    assert pipeline.train(_compose(overrides=FAST), run_dir)["agreement"] == 1.0


def test_a_non_finite_teacher_file_is_refused(tmp_path):
    from spikezip.artifacts import load_ann, save_ann

    model = small_cnn()
    with torch.no_grad():
        model.features[0].weight[0, 0, 0, 0] = float("nan")
    save_ann(model, tmp_path / "teacher.ckpt")
    with pytest.raises(CheckpointError, match=r"non-finite weights \(\['features.0.weight'\]\)"):
        load_ann(tmp_path / "teacher.ckpt", {"name": "small", "num_classes": 10})


def test_settings_the_method_does_not_use_are_refused_as_the_command_line_chose_them():
    """What ``train.py method=rate variant=pr model=resnet20 pet.alpha=0.5`` is told: the
    command line composed as Hydra does for a job, with its Hydra config set."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from spikezip.config import TrainConfig, chosen_settings, refuse_unused

    line = ["method=rate", "variant=pr", "model=resnet20", "pet.alpha=0.5"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=line, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        try:
            chosen = chosen_settings()
        finally:
            HydraConfig.instance().cfg = None  # the other tests run without Hydra
    assert chosen["pet.levels"] == "variant=pr" and "model.rcr" in chosen
    assert chosen["pet.alpha"] == "pet.alpha=0.5" and chosen["method.name"] == "method=rate"
    assert "pet.sub_label" not in chosen  # the schema's default: nobody chose it
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(ConfigError) as info:
        refuse_unused(validate(OmegaConf.structured(cfg), TrainConfig), chosen)
    message = str(info.value)
    assert message.startswith("this run would not use settings it was given: ")
    assert "pet.levels=[8, 4, 2] (from variant=pr): method=rate keeps the ReLUs" in message
    assert "pet.alpha=0.5 (from pet.alpha=0.5): method=rate fine-tunes one ANN" in message
    assert "model.rcr" not in message  # re-routing shapes the teacher every method starts from


@pytest.mark.slow
def test_train_py_refuses_settings_the_method_does_not_use(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "method=rate", "variant=pr", "model=resnet20",
         f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: this run would not use settings it was given: pet.levels=[8, 4, 2] (from "
        "variant=pr): method=rate keeps the ReLUs: it has no quantization levels. Leave them "
        "out, or change what makes them unused."
    )
    assert not (tmp_path / "run_identity.json").exists()


@pytest.mark.parametrize(
    "overrides, refused",
    [
        (["method=qcfs", "pet.levels=[8,4]"], "pet.levels=[8, 4] (from the config given): "
         "method=qcfs quantizes at method.levels = 4 (L)"),
        (["method=qcfs", "method.levels=null", "pet.levels=[8,4]"],
         "method=qcfs uses pet.levels[0] = 8 (L) only"),
        (["method=qcfs", "pet.bn_sharing=independent"], "pet.bn_sharing=independent"),
        (["method=rate", "snn.encoding=once"], "snn.encoding=once"),
        (["variant=n", "pet.sub_label=hard"], "pet.sub_label=hard (from the config given): "
         "pet.levels=[8] is one path"),
        (["pet.main_label=hard", "pet.sub_label=hard", "pet.temperature=2"],
         "pet.temperature=2.0 (from the config given): no loss term is distilled"),
    ],
)  # fmt: skip
def test_settings_a_run_would_not_use_are_refused(tmp_path, overrides, refused):
    with pytest.raises(ConfigError, match="this run would not use settings") as info:
        pipeline.train(_compose(overrides=[*FAST, *overrides]), tmp_path)
    assert refused in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unused_defaults_are_left_out_of_the_run_identity():
    from spikezip.config import run_identity

    def identity(*overrides):
        return run_identity(validate(_compose(overrides=[*FAST, *overrides])))

    rate, qcfs, one_path = identity("method=rate"), identity("method=qcfs"), identity("variant=n")
    for key in ("pet.alpha", "pet.sub_label", "pet.scale_sharing", "pet.bn_sharing"):
        assert key not in rate and key not in qcfs and key not in one_path
        assert key in identity()  # SpikeZIP-P uses them all
    assert "pet.levels" not in rate and "pet.levels" not in qcfs and qcfs["method.levels"] == 4
    assert identity("method=qcfs", "method.levels=null")["pet.levels"] == [8]
    # A setting the rate method ignores does not make its run another run.
    assert identity("method=rate", "pet.levels=[4,2]") == rate


def test_a_second_run_on_a_busy_directory_is_refused_until_the_first_dies(tmp_path):
    lock = tmp_path / pipeline.LOCK
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom spikezip.io import held_lock\n"
         f"with held_lock({str(lock)!r}, 'x'):\n    print('held', flush=True)\n"
         "    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError) as info:
            pipeline.train(_compose(overrides=FAST), tmp_path)
        message = str(info.value)
        assert f"run directory {tmp_path} is in use by pid {holder.pid} on host " in message
        assert not (tmp_path / "run_identity.json").exists()  # refused before anything
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    assert lock.exists()  # left by the killed holder, and no obstacle:
    with held_lock(lock, "x"):
        assert str(os.getpid()) in lock.read_text()
    assert not lock.exists()


@pytest.mark.slow
def test_a_requeued_train_py_is_refused_and_a_rerun_after_kill_9_resumes(tmp_path):
    def train(*extra):
        return [sys.executable, str(ROOT / "train.py"), *FAST, "teacher.epochs=100",
                f"hydra.run.dir={tmp_path}", *extra]  # fmt: skip

    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    first = subprocess.Popen(train(), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    last = tmp_path / "checkpoints" / "teacher" / "last.ckpt"
    try:
        for _ in range(1200):
            if last.exists():
                break
            time.sleep(0.1)
        assert last.exists()
        first.send_signal(signal.SIGSTOP)  # training, frozen mid-stage: it holds the lock
        second = subprocess.run(train(), cwd=tmp_path, env=env, capture_output=True, text=True)
        assert second.returncode == 1
        assert f"is in use by pid {first.pid} on host " in second.stderr.strip().splitlines()[-1]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    rerun = subprocess.run(train(), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "teacher: resuming from" in rerun.stdout + rerun.stderr
    assert f"Run finished: {tmp_path}" in rerun.stdout
    assert not (tmp_path / pipeline.LOCK).exists()
