"""Optimizer and learning-rate schedule shared by the teacher and PET modules."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spikezip.settings import Choice, SettingError, choice, positive


class OptimizerName(Choice):
    sgd = "sgd"
    adamw = "adamw"


class Schedule(Choice):
    cosine = "cosine"  # per step, annealed to 0 over the whole fit
    constant = "constant"


@dataclass
class OptimizerConfig:
    """SGD with momentum and a per-step cosine schedule by default; AdamW available.

    Weight decay applies to weight matrices and kernels only, not to biases, batch-norm
    parameters or Q-ReLU scales (all 0- or 1-dimensional). ``grad_clip``: the largest
    gradient norm (None: no clipping).
    """

    name: OptimizerName = OptimizerName.sgd
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = Schedule.cosine
    grad_clip: float | None = None

    def __post_init__(self):
        self.name = choice("name", self.name, OptimizerName)
        self.schedule = choice("schedule", self.schedule, Schedule)
        positive("lr", self.lr)
        positive("weight_decay", self.weight_decay, zero=True)
        positive("grad_clip", self.grad_clip, none=True)
        if not 0 <= self.momentum < 1:
            raise SettingError(f"momentum must be in [0, 1), got {self.momentum!r}")


def configure(module: nn.Module, config: OptimizerConfig, total_steps: int) -> dict:
    """Lightning's ``configure_optimizers`` answer for the trainable parameters of ``module``."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.name is OptimizerName.sgd:
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    if config.schedule is Schedule.constant:
        return {"optimizer": optimizer}
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
