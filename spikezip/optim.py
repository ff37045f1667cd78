"""Optimizer and learning-rate schedule shared by the teacher and PET modules."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


@dataclass
class OptimizerConfig:
    """SGD with momentum and a per-step cosine schedule by default; AdamW available.

    Weight decay applies to weight matrices and kernels only, not to biases, batch-norm
    parameters or Q-ReLU scales (all 0- or 1-dimensional).
    """

    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    grad_clip: float | None = None  # max gradient norm; None: no clipping

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer name must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("weight_decay must be >= 0 and momentum in [0, 1)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")

    @classmethod
    def of(cls, value: OptimizerConfig | dict | None) -> OptimizerConfig:
        if isinstance(value, cls):
            return value
        return cls(**(value or {}))

    def to_dict(self) -> dict:
        return asdict(self)


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
    if config.name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    if config.schedule == "constant":
        return {"optimizer": optimizer}
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
