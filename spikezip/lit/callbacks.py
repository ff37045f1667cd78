"""The conversion callback: the major path exported, converted and simulated during training."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch

from spikezip.plots import write_accuracy_curve
from spikezip.snn import SNNEvaluation, evaluate_snn, to_snn


class SNNConversionCallback(pl.Callback):
    """Every ``every_n_epochs`` epochs and at the end of fit: export the major path, convert
    it with :func:`spikezip.snn.to_snn` (what ``convert.py`` uses), simulate it once on
    (the first ``limit_batches`` batches of) the validation set, and log
    ``snn/acc_t001`` ... ``snn/acc_tNNN``, ``snn/t_eq_mean``, ``snn/t_eq_max``,
    ``snn/agreement`` and ``snn/qann_acc``. Writes ``acc_vs_timestep.csv`` and ``.png`` in
    ``out_dir`` (default: the trainer's log directory) and, with a W&B logger, a table and
    a line plot.

    The module must provide ``export_qann()`` (as :class:`spikezip.lit.PETModule` does).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        timesteps: int = 32,
        limit_batches: int | None = None,
        max_timesteps: int | None = None,
        encoding: str = "even",
        out_dir: str | Path | None = None,
    ):
        if every_n_epochs < 1 or timesteps < 1:
            raise ValueError("every_n_epochs and timesteps must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.timesteps = timesteps
        self.limit_batches = limit_batches
        self.max_timesteps = max_timesteps
        self.encoding = encoding
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.last: SNNEvaluation | None = None
        self._evaluated_at: int | None = None

    def _directory(self, trainer: pl.Trainer) -> Path:
        if self.out_dir is not None:
            return self.out_dir
        return Path(trainer.log_dir or trainer.default_root_dir)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> SNNEvaluation:
        """Convert the module's major path and evaluate its SNN on the validation data."""
        if not hasattr(pl_module, "export_qann"):
            raise TypeError(f"{type(pl_module).__name__} has no export_qann(): nothing to convert")
        loader = trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0]
        if loader is None:
            raise ValueError("SNNConversionCallback needs validation data to evaluate the SNN")
        limit = self.limit_batches
        planned = trainer.num_val_batches[0] if trainer.num_val_batches else math.inf
        if limit is None and math.isfinite(planned):  # honours limit_val_batches, fast_dev_run
            limit = int(planned)
        qann = pl_module.export_qann()
        result = evaluate_snn(
            to_snn(qann, self.encoding),
            qann,
            loader,
            self.timesteps,
            self.max_timesteps,
            limit,
            device=pl_module.device,
            progress=trainer.progress_bar_callback is not None,
        )
        if trainer.is_global_zero:
            write_accuracy_curve(
                result.snn_accuracy, self._directory(trainer), result.qann_accuracy
            )
            self._log_wandb(trainer, result)
        self.last, self._evaluated_at = result, trainer.global_step
        return result

    def _log_wandb(self, trainer: pl.Trainer, result: SNNEvaluation) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                rows = [[t, acc] for t, acc in enumerate(result.snn_accuracy, 1)]
                table = wandb.Table(data=rows, columns=["timestep", "accuracy"])
                plot = wandb.plot.line(table, "timestep", "accuracy", title="SNN accuracy vs T")
                logger.experiment.log(
                    {"snn/acc_vs_timestep": plot, "trainer/global_step": trainer.global_step}
                )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        result = self.evaluate(trainer, pl_module)
        pl_module.log_dict(result.metrics())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._evaluated_at == trainer.global_step:
            return  # the final weights were evaluated at the last epoch's end
        metrics = self.evaluate(trainer, pl_module).metrics()
        for logger in trainer.loggers:  # self.log is not allowed in on_fit_end
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
