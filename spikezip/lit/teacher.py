"""Training the full-precision ANN, the teacher that PET distils from."""

from __future__ import annotations

import lightning.pytorch as pl
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from spikezip.models import build_model
from spikezip.optim import OptimizerConfig, configure


class TeacherModule(pl.LightningModule):
    """Cross-entropy training of ``build_model(**arch)``; logs ``teacher/train/loss``,
    ``teacher/val/acc`` and so on (prefixed, so they never mix with PET's curves when one
    logger follows both stages).

    Args:
        arch: ``{"name": "small", "num_classes": 10, ...}``, the keyword arguments of
            :func:`spikezip.models.build_model`.
    """

    def __init__(self, arch: dict, optimizer: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(**arch)
        self.optim = OptimizerConfig.of(optimizer)
        self.accuracy = nn.ModuleDict({f"{stage}_acc": MeanMetric() for stage in ("train", "val")})

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> Tensor:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.accuracy[f"{stage}_acc"].update((logits.argmax(-1) == y).float())
        log = {"on_epoch": True, "on_step": False}
        self.log(f"teacher/{stage}/loss", loss, prog_bar=stage == "train", **log)
        self.log(f"teacher/{stage}/acc", self.accuracy[f"{stage}_acc"], prog_bar=True, **log)
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
