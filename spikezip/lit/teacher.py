"""Training the full-precision ANN, the teacher that PET distils from."""

from __future__ import annotations

import lightning.pytorch as pl
from torch import Tensor, nn

from spikezip.config import to_plain
from spikezip.models import build_model
from spikezip.optim import OptimizerConfig, configure
from spikezip.tasks import task_for


class TeacherModule(pl.LightningModule):
    """Supervised training of ``build_model(**arch)`` with its task's loss (cross-entropy
    for a classifier); logs ``teacher/train/loss``, ``teacher/val/acc`` and so on
    (prefixed, so they never mix with PET's curves when one logger follows both stages).

    Args:
        arch: ``{"name": "small", "num_classes": 10, ...}``, the keyword arguments of
            :func:`spikezip.models.build_model`.
        optimizer: the optimizer settings (default: SGD, cosine schedule).
    """

    def __init__(self, arch: dict, optimizer: OptimizerConfig | dict | None = None):
        super().__init__()
        if not isinstance(optimizer, OptimizerConfig):
            optimizer = OptimizerConfig(**(optimizer or {}))
        self.save_hyperparameters({"arch": arch, "optimizer": to_plain(optimizer)})
        self.model = build_model(**arch)
        self.optim = optimizer
        self.task = task_for(arch)
        stages = ("train", "val") if self.task.score_on_training else ("val",)
        self.accuracy = nn.ModuleDict({f"{s}_acc": self.task.metric() for s in stages})

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> Tensor:
        x, y = batch
        logits = self.model(x)
        loss = self.task.loss(logits, y)
        log = {"on_epoch": True, "on_step": False, "sync_dist": True}  # means over processes
        self.log(f"teacher/{stage}/loss", loss, prog_bar=stage == "train", **log)
        if f"{stage}_acc" in self.accuracy:  # teacher/val/acc, or a detector's .../map50
            metric = self.accuracy[f"{stage}_acc"]
            metric.update(logits.detach(), y)
            self.log(f"teacher/{stage}/{self.task.score_name}", metric, prog_bar=True, **log)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        clip = self.optim.grad_clip if gradient_clip_val is None else gradient_clip_val
        if clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=clip, gradient_clip_algorithm=gradient_clip_algorithm
            )

    def configure_optimizers(self):
        return configure(self.model, self.optim, self.trainer.estimated_stepping_batches)
