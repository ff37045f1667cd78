"""Lightning wiring: the PET and teacher modules, the conversion callback, checkpoints."""

import csv

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch.utils.data import DataLoader, TensorDataset

from spikezip.artifacts import CheckpointError
from spikezip.config import SNNConfig
from spikezip.lit import PETModule, SNNConversionCallback, TeacherModule
from spikezip.pet import PETConfig, export_from_checkpoint
from spikezip.snn import check_equivalence, to_snn

ARCH = {"name": "small", "num_classes": 4, "width": 0.25}


def _loader(n=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=gen)
    y = torch.randint(0, 4, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def _trainer(tmp_path, **kwargs):
    defaults = dict(
        accelerator="cpu",
        enable_model_summary=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def test_pet_fast_dev_run_logs_paths_and_snn_curve(tmp_path):
    settings = SNNConfig(timesteps=12, max_timesteps=64, callback_batches=None)
    callback = SNNConversionCallback(settings, out_dir=tmp_path / "snn")
    module = PETModule(ARCH, PETConfig(levels=[4, 2, 1], optimizer={"lr": 0.01}))
    trainer = _trainer(tmp_path, fast_dev_run=True, callbacks=[callback])
    trainer.fit(module, _loader(), _loader(seed=1))
    metrics = trainer.callback_metrics
    for key in ["train/loss", "val/loss", "val/acc", "train/acc_l4", "val/acc_l2", "val/acc_l1"]:
        assert key in metrics, key
    for key in ["snn/acc_t001", "snn/acc_t012", "snn/t_eq_mean", "snn/t_eq_max", "snn/agreement"]:
        assert key in metrics, key
    assert "snn/acc_t013" not in metrics
    assert metrics["snn/agreement"] == 1.0  # the SNN at equilibrium is the QANN
    assert metrics["snn/t_eq_max"] >= 4  # never before T_off = n
    with open(tmp_path / "snn" / "acc_vs_timestep.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestep", "accuracy"] and len(rows) == 13
    assert (tmp_path / "snn" / "acc_vs_timestep.png").stat().st_size > 1000
    assert callback.last.count == 16  # fast_dev_run: one validation batch


class _EpochLosses(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def test_pet_training_lowers_the_loss_and_follows_the_schedule(tmp_path):
    torch.manual_seed(0)
    losses = _EpochLosses()
    module = PETModule(ARCH, PETConfig(levels=[4, 2], optimizer={"lr": 0.05, "grad_clip": 1.0}))
    trainer = _trainer(
        tmp_path, max_epochs=6, logger=False, enable_checkpointing=False, callbacks=[losses]
    )
    trainer.fit(module, _loader(n=64))
    assert trainer.global_step == 6 * 4  # one optimizer step per batch
    assert module.lr_schedulers().get_last_lr()[0] < 1e-3  # cosine annealed to ~0
    assert losses.losses[-1] < 0.5 * losses.losses[0]


def test_teacher_is_frozen_and_in_eval_mode_during_pet():
    module = PETModule(ARCH, PETConfig(levels=[4, 2]))
    module.train()
    assert not module.teacher.training
    assert not any(p.requires_grad for p in module.teacher.parameters())
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in module.pet.parameters()}


def test_teacher_module_trains(tmp_path):
    module = TeacherModule(ARCH, optimizer={"name": "adamw", "lr": 1e-3})
    trainer = _trainer(tmp_path, fast_dev_run=True)
    before = module.model.features[0].weight.clone()
    trainer.fit(module, _loader(), _loader(seed=1))
    assert {"teacher/train/loss", "teacher/train/acc", "teacher/val/acc"} <= set(
        trainer.callback_metrics
    )
    assert not torch.equal(before, module.model.features[0].weight)


def test_checkpoint_exports_the_major_path_without_lightning(tmp_path):
    teacher = TeacherModule(ARCH).model
    module = PETModule(ARCH, PETConfig(levels=[4, 2], optimizer={"lr": 0.01}), teacher=teacher)
    trainer = _trainer(tmp_path, max_epochs=2, limit_train_batches=2, logger=CSVLogger(tmp_path))
    trainer.fit(module, _loader(), _loader(seed=1))
    ckpt = next((tmp_path).rglob("*.ckpt"))
    exported = export_from_checkpoint(ckpt)
    x = torch.randn(8, 1, 28, 28)
    torch.testing.assert_close(exported(x), module.export_qann()(x), rtol=0, atol=0)
    report = check_equivalence(exported.double(), to_snn(exported).double(), x.double())
    assert report.equivalent


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        export_from_checkpoint(tmp_path / "missing.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or not a PyTorch file"):
        export_from_checkpoint(corrupt)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a SpikeZIP PET checkpoint"):
        export_from_checkpoint(other)


def test_wandb_logger_gets_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logged = []
    logger = WandbLogger(save_dir=tmp_path, offline=True)
    monkeypatch.setattr(logger.experiment, "log", lambda data, **kw: logged.append(data))
    callback = SNNConversionCallback(SNNConfig(timesteps=4), out_dir=tmp_path)
    trainer = _trainer(
        tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=logger,
        callbacks=[callback], enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(PETModule(ARCH, PETConfig(levels=[2])), _loader(), _loader(seed=1))
    assert any("snn/acc_vs_timestep" in entry for entry in logged)


def test_callback_needs_a_convertible_module(tmp_path):
    trainer = _trainer(tmp_path, fast_dev_run=True, callbacks=[SNNConversionCallback()])
    with pytest.raises(TypeError, match="has no export_qann"):
        trainer.fit(TeacherModule(ARCH), _loader(), _loader(seed=1))
