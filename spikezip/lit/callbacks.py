"""The conversion callback: the major path exported, converted and measured during training."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import lightning.pytorch as pl
import torch

from spikezip.config import SNNConfig
from spikezip.evaluation import evaluation_batches, write_curve
from spikezip.snn import measure_snn, to_snn
from spikezip.snn.measure import Curve, Measurement
from spikezip.tasks import task_for


class SNNConversionCallback(pl.Callback):
    """Every ``settings.every_n_epochs`` epochs and at the end of fit: export the major
    path, convert it with :func:`spikezip.snn.to_snn` (what ``convert.py`` uses), simulate
    it once on (the first ``settings.callback_batches`` batches of) the validation set,
    shared out between the trainer's processes,
    and log ``snn/acc_t001`` ... ``snn/acc_tNNN``, ``snn/t_eq_mean``, ``snn/t_eq_max``,
    ``snn/agreement`` and ``snn/qann_acc`` (a detector: ``snn/map50_t001``, ... and
    ``snn/qann_map50``: :class:`spikezip.tasks.DetectionMeasurement`). Writes
    ``acc_vs_timestep.csv`` and ``.png`` (``map_vs_timestep``) in ``out_dir`` (default: the
    trainer's log directory) and, with a W&B logger, a table and a line plot. The sums are
    reduced over the trainer's processes.

    The module must provide ``export_qann()`` and ``hparams.arch`` (as
    :class:`spikezip.lit.PETModule` does); one with ``to_spiking(qann, encoding,
    calibration)`` converts with its own method, given the ``calibration`` batches (what
    the rate method sets its thresholds on: :func:`spikezip.methods.calibration_data`).
    """

    def __init__(
        self,
        settings: SNNConfig | None = None,
        out_dir: str | Path | None = None,
        calibration: Iterable | None = None,
    ):
        self.settings = settings or SNNConfig()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.calibration = calibration
        self.last: Measurement | None = None
        self._measured_at: int | None = None

    def _directory(self, trainer: pl.Trainer) -> Path:
        if self.out_dir is not None:
            return self.out_dir
        return Path(trainer.log_dir or trainer.default_root_dir)

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Measurement:
        """Convert the module's major path and measure its SNN on the validation data."""
        if not hasattr(pl_module, "export_qann"):
            raise TypeError(f"{type(pl_module).__name__} has no export_qann(): nothing to convert")
        loader = trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0]
        if loader is None:
            raise ValueError("SNNConversionCallback needs validation data to measure the SNN")
        # Never more batches than validation runs (limit_val_batches, fast_dev_run), counted
        # over all processes; each process measures its share, none a padded duplicate.
        planned = trainer.num_val_batches[0] if trainer.num_val_batches else math.inf
        limit = min(self.settings.callback_batches or math.inf, planned * trainer.world_size)
        batches = evaluation_batches(
            loader.dataset, loader.batch_size, int(limit) if math.isfinite(limit) else None
        )
        qann = pl_module.export_qann()
        convert = getattr(pl_module, "to_spiking", None)
        snn = (
            convert(qann, self.settings.encoding, self.calibration)
            if convert is not None
            else to_snn(qann, self.settings.encoding)
        ).use_backend(self.settings.backend)
        totals = measure_snn(
            snn,
            qann,
            batches,
            timesteps=self.settings.timesteps,
            max_timesteps=self.settings.max_timesteps,
            device=pl_module.device,
            progress=trainer.progress_bar_callback is not None and trainer.is_global_zero,
            task=task_for(pl_module.hparams["arch"]),
        )
        # Collectives want tensors on the module's device (NCCL has no CPU tensors).
        totals.all_reduce(
            lambda t: trainer.strategy.reduce(t.to(pl_module.device), reduce_op="sum")
        )
        curve = totals.curve()  # on every process: a detector's mAP is gathered here
        if trainer.is_global_zero:
            write_curve(curve, self._directory(trainer))
            for logger in trainer.loggers:
                log_curve(logger, curve, f"snn/{curve.stem}")
        self.last, self._measured_at = totals, trainer.global_step
        return totals

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.settings.every_n_epochs:
            return
        # The same totals on every process: the mean over them is the value itself.
        pl_module.log_dict(self.measure(trainer, pl_module).metrics(), sync_dist=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._measured_at == trainer.global_step:
            return  # the final weights were measured at the last epoch's end
        metrics = self.measure(trainer, pl_module).metrics()
        for logger in trainer.loggers:  # self.log is not allowed in on_fit_end
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})


def log_curve(logger, curve: Curve, key: str) -> None:
    """A score-vs-T table and line plot for a W&B logger (other loggers: nothing)."""
    # Lightning loads only with a W&B logger to check for.
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return
    # W&B (optional, slow to import) loads only when a run logs to it.
    import wandb

    rows = [[t, v] for t, v in zip(curve.timesteps, curve.values, strict=True)]
    table = wandb.Table(data=rows, columns=["timestep", curve.key])
    plot = wandb.plot.line(table, "timestep", curve.key, title=f"SNN {curve.name} vs T")
    logger.experiment.log({key: plot, f"{key}_table": table})
