"""The whole SpikeZIP pipeline behind ``train.py``: teacher -> PET -> QANN -> SNN -> report.

The teacher and PET stages leave ``teacher.ckpt`` and ``qann.ckpt`` in the run directory
and are skipped when those are there (conversion and evaluation run again); a training
stage writes ``checkpoints/<stage>/last.ckpt`` after every epoch and resumes from it.
Running the same command again on the same run directory (``hydra.run.dir=...``)
continues an interrupted run from its last finished epoch; a rerun with other settings is
refused before it touches anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from spikezip.artifacts import load_ann, load_qann, load_snn, save_ann, save_qann
from spikezip.config import (
    TEACHER_KEYS,
    ConfigError,
    TeacherSource,
    TrainConfig,
    check_same_run,
    chosen_settings,
    record_hydra_run,
    refuse_unused,
    run_identity,
    to_plain,
    validate,
)
from spikezip.conversion import convert_and_prove
from spikezip.data import EpochShuffle, build_datasets
from spikezip.distributed import barrier, is_rank_zero, on_rank_zero, reduce_sum
from spikezip.evaluation import evaluate_snn, evaluation_batches
from spikezip.io import CheckpointError, copy_file, file_lock, held_lock, read_json, write_json
from spikezip.lit.callbacks import SNNConversionCallback, log_curve
from spikezip.lit.console import ModelTable, quiet_lightning
from spikezip.lit.guards import AtomicCheckpointIO, DivergenceGuard, EpochSeed, epoch_checkpoint
from spikezip.lit.pet_module import PETModule
from spikezip.lit.teacher import TeacherModule
from spikezip.methods import calibration_data, method_of
from spikezip.models import build_model
from spikezip.tasks import Report

log = logging.getLogger(__name__)
LOCK = ".spikezip.lock"  # held by the process running a run directory


@dataclass
class Run:
    """One run of the pipeline: its settings, directory, data and loggers."""

    cfg: TrainConfig
    dir: Path
    arch: dict
    input_shape: tuple[int, ...]
    train_loader: DataLoader
    val_loader: DataLoader
    wandb: WandbLogger | None = None
    pixels: dict | None = None  # how the dataset stores its pixels (integer weights)

    def calibration(self) -> DataLoader | None:
        """The batches a calibrating method (rate coding) sets its thresholds on (the
        training split without augmentation, as ``convert.py`` uses); None for the others."""
        if not method_of(self.cfg.method).calibrates:
            return None
        train, _, _ = build_datasets(**self.cfg.data.keywords(augment=False))
        return calibration_data(train)

    def loggers(self, stage: str) -> list:
        loggers: list = []
        if self.cfg.logger.csv:
            # A resumed stage logs next to the first attempt (logs/pet-2, ...): Lightning's
            # CSVLogger would otherwise delete the earlier epochs' metrics.
            version, attempt = stage, 1
            while (self.dir / "logs" / version).exists():
                attempt += 1
                version = f"{stage}-{attempt}"
            loggers.append(CSVLogger(self.dir, name="logs", version=version))
        if self.wandb is not None:
            loggers.append(self.wandb)
        return loggers

    def trainer(self, stage: str, epochs: int, callbacks: list) -> pl.Trainer:
        t = self.cfg.trainer
        limits = {
            key: value
            for key, value in (
                ("limit_train_batches", t.limit_train_batches),
                ("limit_val_batches", t.limit_val_batches),
            )
            if value is not None
        }
        return pl.Trainer(
            max_epochs=epochs,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            sync_batchnorm=t.sync_batchnorm,
            precision=t.precision,
            log_every_n_steps=t.log_every_n_steps,
            enable_progress_bar=t.enable_progress_bar,
            default_root_dir=self.dir,
            logger=self.loggers(stage) or False,
            callbacks=[ModelTable(), *callbacks],
            enable_model_summary=False,  # Lightning's own: ModelTable replaces it
            plugins=[AtomicCheckpointIO()],
            **limits,
        )

    def fit(
        self, stage: str, module: pl.LightningModule, epochs: int, lr: float, callbacks=()
    ) -> pl.Trainer:
        """Train ``module`` for ``stage`` (``teacher`` or ``pet``, its config key), with an
        atomic checkpoint after every epoch, resuming from ``checkpoints/<stage>/last.ckpt``
        and stopping at the first non-finite loss or weight."""
        ckpts = self.dir / "checkpoints" / stage
        method = method_of(self.cfg.method)
        label = "teacher" if stage == "teacher" else f"{method.fine_tuning} fine-tuning"
        guards = [
            epoch_checkpoint(ckpts),
            DivergenceGuard(label, key=stage, lr=lr),
            EpochSeed(self.cfg.seed),
        ]
        trainer = self.trainer(stage, epochs, [*guards, *callbacks])
        last = ckpts / "last.ckpt"
        start = 0
        if last.exists():
            log.info("%s: resuming from %s", stage, last)
            start = _finished_epochs(last, label)
        # Data-loader workers take their first indices before Lightning calls set_epoch.
        self.train_loader.sampler.set_epoch(start)
        trainer.fit(
            module, self.train_loader, self.val_loader, ckpt_path=last if last.exists() else None
        )
        return trainer


def _finished_epochs(checkpoint: Path, label: str) -> int:
    """Epochs a stage's ``last.ckpt`` holds (it is written at the end of an epoch).

    Raises:
        CheckpointError: the file is not a whole checkpoint (e.g. a bad copy of the run
            directory); the message says how to restart the stage without it.
    """
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        return int(state["epoch"]) + 1
    except Exception as err:  # torch fails on a truncated zip with any exception type
        raise CheckpointError(
            f"{checkpoint}, the last epoch checkpoint of the {label}, is corrupt or "
            f"truncated ({type(err).__name__}: {str(err).splitlines()[0][:120]}). Move it "
            f"aside (mv {checkpoint} {checkpoint}.corrupt) and run the same command again: "
            "the stage then restarts from its first epoch (the stages before it are kept)"
        ) from err


def _open_run(cfg: TrainConfig, run_dir: Path) -> Run:
    d = cfg.data
    train, val, info = build_datasets(**d.keywords())
    workers = {
        "num_workers": d.num_workers,
        "persistent_workers": d.num_workers > 0,
        # Page-locked batches copy to a GPU asynchronously, beside the computation.
        "pin_memory": cfg.trainer.accelerator in ("gpu", "cuda", "auto")
        and torch.cuda.is_available(),
    }
    # The order depends on (seed, epoch) only, and the loader draws its workers' seeds from
    # its own generator: the global RNG, reseeded at every epoch (EpochSeed), is left to
    # augmentation and dropout. A resumed run then repeats an uninterrupted one.
    order = EpochShuffle(len(train), cfg.seed)
    train_loader = DataLoader(
        train, d.batch_size, sampler=order, generator=torch.Generator(), **workers
    )
    val_loader = DataLoader(val, d.eval_batch_size, shuffle=False, **workers)
    shape = (info.in_channels, info.image_size, info.image_size)
    pixels = getattr(info, "pixels", None)  # a detection set has none
    return Run(cfg, run_dir, cfg.model.arch(info), shape, train_loader, val_loader, pixels=pixels)


def obtain_teacher(run: Run) -> nn.Module:
    """The full-precision teacher: trained here, loaded, or torchvision's pretrained; in a
    sweep, shared by the jobs that would make it identically (``teacher.cache``)."""
    path = run.dir / "teacher.ckpt"
    if path.exists():
        log.info("teacher: using %s", path)
        return load_ann(path, run.arch)
    cache = _teacher_cache(run)
    if cache is None:
        return _make_teacher(run, path)
    # One job makes each teacher while the others that need it wait, then copy it.
    with file_lock(cache.with_suffix(".lock")):
        cached = cache / "teacher.ckpt"
        if cached.exists():
            log.info("teacher: reusing %s (made by a job with the same teacher settings)", cached)
            copy_file(cached, path)
            return load_ann(path, run.arch)
        model = _make_teacher(run, path)
        copy_file(path, cached)
        return model


def _teacher_cache(run: Run) -> Path | None:
    """``<teacher.cache>/<hash of every setting the teacher depends on>``, or None when
    teachers are not shared (no cache, or several processes per job)."""
    cfg = run.cfg
    if cfg.teacher.cache is None or cfg.trainer.devices != 1 or cfg.trainer.num_nodes != 1:
        return None
    identity = run_identity(cfg)
    teacher = {k: v for k, v in identity.items() if k.startswith(TEACHER_KEYS)}
    key = hashlib.sha256(json.dumps(teacher, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.teacher.cache) / key


def _make_teacher(run: Run, path: Path) -> nn.Module:
    teacher = run.cfg.teacher
    if teacher.source is TeacherSource.checkpoint:
        model = load_ann(teacher.checkpoint, run.arch)
    elif teacher.source is TeacherSource.pretrained:
        if run.arch["num_classes"] != 1000:  # the model and the dataset were checked before
            raise ConfigError(
                "teacher.source=pretrained needs the 1000 ImageNet classes; the ImageNet "
                f"folder under data.root={run.cfg.data.root} has {run.arch['num_classes']}"
            )
        model = build_model(**run.arch, pretrained=True)
    else:
        module = TeacherModule(run.arch, teacher.optimizer)
        trainer = run.fit("teacher", module, teacher.epochs, teacher.optimizer.lr)
        trainer.save_checkpoint(path)  # atomic (AtomicCheckpointIO), on rank 0 only
        barrier()
        return module.model
    on_rank_zero(lambda: save_ann(model, path))
    return model


def run_pet(run: Run, teacher: nn.Module) -> PETModule:
    """PET fine-tuning with the conversion callback; resumes from its last checkpoint."""
    inputs = {"pixels": run.pixels, "shape": list(run.input_shape)}
    module = PETModule(run.arch, run.cfg.pet, teacher=teacher, method=run.cfg.method, inputs=inputs)
    callback = SNNConversionCallback(run.cfg.snn, run.dir / "pet_snn", run.calibration())
    pet = run.cfg.pet
    run.fit("pet", module, pet.epochs, pet.optimizer.lr, [callback])
    return module


def _made_anything(run_dir: Path) -> bool:
    """Whether a run directory holds an artifact or a training checkpoint."""
    artifacts = ("teacher.ckpt", "qann.ckpt", "snn.pt")
    return any((run_dir / name).exists() for name in artifacts) or any(
        run_dir.glob("checkpoints/*/last.ckpt")
    )


def train(cfg: DictConfig | TrainConfig, run_dir: str | Path) -> Report:
    """Run (or continue) the whole pipeline in ``run_dir``; returns its report
    (``snn_eval.json``).

    A rerun in a directory that already holds artifacts or checkpoints continues it, if
    its settings are the same (:func:`spikezip.config.check_same_run`); otherwise it is
    refused before anything in the directory changes.
    """
    composed = cfg
    cfg = validate(cfg, TrainConfig)
    refuse_unused(cfg, chosen_settings())  # e.g. pet.alpha for a method with one path
    cfg.trainer.simulation_device()  # trainer=gpu without CUDA fails now, not after training
    run_dir = Path(run_dir)
    if not is_rank_zero():  # a process beside rank 0 of the same run: it holds the lock
        return _train(cfg, composed, run_dir)
    # Held for the run's lifetime: a second train.py on this directory (a resubmitted
    # cluster job) is refused instead of training the same stages beside it.
    with held_lock(run_dir / LOCK, f"run directory {run_dir}"):
        return _train(cfg, composed, run_dir)


def _train(cfg: TrainConfig, composed, run_dir: Path) -> Report:
    identity = run_dir / "run_identity.json"
    if identity.exists() and _made_anything(run_dir):
        check_same_run(read_json(identity), cfg)
    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True)
    run = _open_run(cfg, run_dir)  # a missing dataset fails here, before anything is written
    if is_rank_zero():  # under DDP every process runs this function; one writes
        write_json(run_identity(cfg), identity)
        if isinstance(composed, DictConfig):
            record_hydra_run(run_dir, composed)
    if cfg.logger.wandb:
        run.wandb = WandbLogger(
            project=cfg.logger.project,
            name=f"{cfg.name}-{run_dir.name}",
            save_dir=run_dir,
            mode=os.environ.get("WANDB_MODE") or cfg.logger.wandb_mode.value,  # env wins
            config=to_plain(cfg),
        )
    try:
        return _stages(run)
    finally:
        if run.wandb is not None:
            run.wandb.experiment.finish()  # one W&B run per job, also in a multirun


def _join_process_group(run: Run) -> None:
    """A process that torchrun or SLURM started beside others joins their process group
    now: a rerun that finds its QANN trains nothing, so Lightning (which would join it)
    never starts, and conversion and evaluation must still be shared out."""
    if torch.distributed.is_initialized():
        return
    if all(int(os.environ.get(key, 1)) <= 1 for key in ("WORLD_SIZE", "SLURM_NTASKS")):
        return  # neither torchrun nor srun started others beside this process
    t = run.cfg.trainer
    trainer = pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run.dir,
    )
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None or not environment.creates_processes_externally:
        return  # one process, or Lightning's own launcher, which starts the others in fit
    if trainer.world_size > 1:
        trainer.strategy.setup_environment()
        log.info("joined the process group: rank %d of %d", trainer.global_rank, trainer.world_size)


def _stages(run: Run) -> Report:
    cfg, run_dir = run.cfg, run.dir
    _join_process_group(run)
    qann_path = run_dir / "qann.ckpt"
    if qann_path.exists():
        log.info("QANN: using %s", qann_path)
        teacher = load_ann(run_dir / "teacher.ckpt", run.arch)
    else:
        teacher = obtain_teacher(run)
        qann = run_pet(run, teacher).export_qann().cpu()
        data = cfg.data.source()
        on_rank_zero(
            lambda: save_qann(
                qann,
                qann_path,
                arch=run.arch,
                levels=method_of(cfg.method).fine_tuned_levels(cfg.pet, cfg.method)[0],
                input_shape=run.input_shape,
                data=data,
                method=cfg.method,
            )
        )
    val = run.val_loader.dataset
    settings = cfg.snn

    def convert() -> None:  # once, on rank 0; the others wait for snn.pt
        qann, metadata = load_qann(qann_path)
        sample = torch.stack([val[i][0] for i in range(min(16, len(val)))])
        convert_and_prove(
            qann,
            metadata,
            run_dir,
            encoding=settings.encoding,
            max_timesteps=settings.max_timesteps,
            sample=sample,
            method=cfg.method,
            calibration=run.calibration(),
            progress=cfg.trainer.enable_progress_bar,
        )

    on_rank_zero(convert)
    snn, qann, metadata = load_snn(run_dir / "snn.pt")
    report = evaluate_snn(
        snn,
        qann,
        metadata,
        evaluation_batches(val, cfg.data.eval_batch_size, settings.eval_batches),
        run_dir,
        settings,
        device=cfg.trainer.simulation_device(),
        progress=cfg.trainer.enable_progress_bar and is_rank_zero(),
        reduce_sum=reduce_sum,
        write=is_rank_zero(),
        ann=teacher,
        max_accuracy_drop=cfg.pet.max_accuracy_drop,
    )
    if run.wandb is not None:
        curve = report.curve()
        final = {f"final/qann_{report.score_name}": report.qann_score}  # as snn/qann_acc
        # how far from the QANN, at equilibrium
        final.update({f"final/{k}": v for k, v in report.equilibrium().items()})
        run.wandb.log_metrics(final)
        log_curve(run.wandb, curve, f"final/{curve.stem}")
    return report
