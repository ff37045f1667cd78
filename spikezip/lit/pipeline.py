"""The whole SpikeZIP pipeline behind ``train.py``: teacher -> PET -> QANN -> SNN -> report.

Each stage leaves its artifact in the run directory and is skipped when it is already
there, and PET resumes from its last epoch checkpoint: running the same command again on
the same run directory (``hydra.run.dir=...``) continues an interrupted run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from spikezip.artifacts import load_qann, load_snn, save_qann
from spikezip.config import (
    ConfigError,
    check_same_run,
    model_arch,
    run_identity,
    to_plain,
    validate,
)
from spikezip.data import build_datasets
from spikezip.lit.callbacks import SNNConversionCallback
from spikezip.lit.pet_module import PETModule
from spikezip.lit.teacher import TeacherModule
from spikezip.models import build_model
from spikezip.pet.checkpoint import CheckpointError, load_checkpoint
from spikezip.plots import write_json
from spikezip.workflows import convert, evaluate, resolve_device

log = logging.getLogger(__name__)
PRETRAINED = ("resnet18", "resnet34", "vgg16")


def _loaders(cfg) -> tuple[DataLoader, DataLoader, tuple[int, ...], dict]:
    d = cfg.data
    train, val, info = build_datasets(d.name, d.root, d.download, d.augment, d.seed)
    workers = {"num_workers": d.num_workers, "persistent_workers": d.num_workers > 0}
    train_loader = DataLoader(train, d.batch_size, shuffle=True, drop_last=False, **workers)
    val_loader = DataLoader(val, d.eval_batch_size, shuffle=False, **workers)
    shape = (info.in_channels, info.image_size, info.image_size)
    return train_loader, val_loader, shape, model_arch(cfg.model, info)


def _loggers(cfg, run_dir: Path, stage: str, wandb: WandbLogger | None) -> list:
    loggers: list = []
    if cfg.logger.csv:
        # A resumed stage logs next to the first attempt (logs/pet-2, ...): Lightning's
        # CSVLogger would otherwise delete the earlier epochs' metrics.
        version, attempt = stage, 1
        while (run_dir / "logs" / version).exists():
            attempt += 1
            version = f"{stage}-{attempt}"
        loggers.append(CSVLogger(run_dir, name="logs", version=version))
    if wandb is not None:
        loggers.append(wandb)
    return loggers


def _trainer(cfg, run_dir: Path, epochs: int, callbacks: list, loggers: list) -> pl.Trainer:
    t = cfg.trainer
    limits = {
        k: v
        for k, v in (
            ("limit_train_batches", t.limit_train_batches),
            ("limit_val_batches", t.limit_val_batches),
        )
        if v is not None
    }
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        default_root_dir=run_dir,
        logger=loggers or False,
        callbacks=callbacks,
        **limits,
    )


def _save_lightning(trainer: pl.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` through a temporary name: no half-written checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp)
    os.replace(tmp, path)


def _model_from_checkpoint(path, arch: dict) -> nn.Module:
    """The ANN in a ``teacher.ckpt`` (Lightning, ``model.*`` keys) or a plain state_dict."""
    payload = load_checkpoint(path)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state_dict")
    if any(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    model = build_model(**arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit model {arch['name']}: {err}") from err
    return model


def obtain_teacher(cfg, arch: dict, train_loader, val_loader, run_dir: Path, wandb) -> nn.Module:
    """The full-precision teacher: trained here, loaded, or torchvision's pretrained."""
    path = run_dir / "teacher.ckpt"
    if path.exists():
        log.info("teacher: using %s", path)
        return _model_from_checkpoint(path, arch)
    source = cfg.teacher.source
    if source == "checkpoint":
        model = _model_from_checkpoint(cfg.teacher.checkpoint, arch)
    elif source == "pretrained":
        if arch["name"] not in PRETRAINED or arch["num_classes"] != 1000:
            raise ConfigError(
                f"teacher.source=pretrained needs an ImageNet model {PRETRAINED} with 1000 "
                f"classes; got model.name={arch['name']} with {arch['num_classes']} classes"
            )
        model = build_model(**arch, pretrained=True)
    else:
        module = TeacherModule(arch, optimizer=to_plain(cfg.teacher.optimizer))
        ckpts = run_dir / "checkpoints" / "teacher"
        trainer = _trainer(
            cfg, run_dir, cfg.teacher.epochs,
            [ModelCheckpoint(ckpts, save_last=True, save_top_k=0)],
            _loggers(cfg, run_dir, "teacher", wandb),
        )  # fmt: skip
        last = ckpts / "last.ckpt"
        trainer.fit(module, train_loader, val_loader, ckpt_path=last if last.exists() else None)
        _save_lightning(trainer, path)
        return module.model
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return model


def run_pet(cfg, arch, teacher, train_loader, val_loader, run_dir: Path, wandb) -> PETModule:
    """PET fine-tuning with the conversion callback; resumes from its last checkpoint."""
    p = cfg.pet
    module = PETModule(
        arch, list(p.levels), p.scale_sharing, p.bn_sharing, p.alpha, p.sub_label,
        p.main_label, p.temperature, to_plain(p.optimizer), teacher=teacher,
    )  # fmt: skip
    ckpts = run_dir / "checkpoints" / "pet"
    callbacks = [
        ModelCheckpoint(ckpts, save_last=True, save_top_k=0),
        SNNConversionCallback(
            cfg.snn.every_n_epochs, cfg.snn.timesteps, cfg.snn.callback_batches,
            cfg.snn.max_timesteps, cfg.snn.encoding, run_dir / "pet_snn",
        ),
    ]  # fmt: skip
    trainer = _trainer(cfg, run_dir, p.epochs, callbacks, _loggers(cfg, run_dir, "pet", wandb))
    last = ckpts / "last.ckpt"
    if last.exists():
        log.info("PET: resuming from %s", last)
    trainer.fit(module, train_loader, val_loader, ckpt_path=last if last.exists() else None)
    return module


def _route_lightning_logs() -> None:
    """Lightning prints through its own handler; under Hydra that doubles every line.
    Send its records to the root logger (Hydra's console and train.log) only."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Run (or continue) the whole pipeline in ``run_dir``; returns ``snn_eval.json``."""
    validate(cfg)
    if logging.getLogger().handlers:  # a configured root logger (Hydra's)
        _route_lightning_logs()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = run_dir / "run_identity.json"
    if identity.exists():  # a rerun: resume only what these settings would produce
        check_same_run(json.loads(identity.read_text()), cfg)
    else:
        write_json(run_identity(cfg), identity)
    pl.seed_everything(cfg.seed, workers=True)
    train_loader, val_loader, input_shape, arch = _loaders(cfg)
    wandb = None
    if cfg.logger.wandb:
        wandb = WandbLogger(
            project=cfg.logger.project, name=f"{cfg.name}-{run_dir.name}", save_dir=run_dir,
            mode=os.environ.get("WANDB_MODE") or cfg.logger.wandb_mode,  # the env var wins
            config=to_plain(cfg),
        )  # fmt: skip
    try:
        qann_path = run_dir / "qann.ckpt"
        if qann_path.exists():
            log.info("QANN: using %s", qann_path)
            qann, metadata = load_qann(qann_path)
        else:
            teacher = obtain_teacher(cfg, arch, train_loader, val_loader, run_dir, wandb)
            module = run_pet(cfg, arch, teacher, train_loader, val_loader, run_dir, wandb)
            qann = module.export_qann().cpu()
            data = {"name": cfg.data.name, "root": cfg.data.root, "seed": cfg.data.seed}
            save_qann(qann, qann_path, arch, cfg.pet.levels[0], input_shape, data)
            qann, metadata = load_qann(qann_path)
        sample = next(iter(val_loader))[0][:16]
        convert(qann, metadata, run_dir, cfg.snn.encoding, sample, 10 * cfg.snn.max_timesteps)
        snn, qann, metadata = load_snn(run_dir / "snn.pt")
        summary = evaluate(
            snn, qann, metadata, val_loader, run_dir,
            cfg.snn.timesteps, cfg.snn.max_timesteps, cfg.snn.eval_batches,
            cfg.snn.energy.joules_per_sop, cfg.snn.energy.joules_per_flop,
            cfg.snn.feature_maps, "float32", resolve_device(cfg.trainer.accelerator),
            cfg.trainer.enable_progress_bar,
        )  # fmt: skip
        if wandb is not None:
            wandb.log_metrics(
                {
                    "final/qann_acc": summary["qann_accuracy"],
                    "final/agreement": summary["agreement"],
                }
            )
        return summary
    finally:
        if wandb is not None:
            wandb.experiment.finish()  # one W&B run per job, also in a multirun
