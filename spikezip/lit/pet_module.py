"""Paths-ensemble training of a QANN with distillation from its full-precision teacher."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.fx.experimental.optimization import fuse

from spikezip.config import to_plain
from spikezip.methods import MethodConfig, method_of
from spikezip.models import build_model
from spikezip.optim import configure
from spikezip.pet import EnsembleLoss, PathsResult, PETConfig, backward_paths
from spikezip.pet.paths import export_network, fine_tuning_model
from spikezip.snn import SpikingNetwork
from spikezip.tasks import task_for

# The frozen teacher stays in eval mode on purpose; Lightning warns about any such module.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", module="lightning")


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each batch-norm folded into the conv before it
    (the same function, fewer passes); ``model`` itself if it cannot be traced."""
    try:
        return fuse(copy.deepcopy(model).eval()).requires_grad_(False)
    except Exception:  # untraceable (e.g. a user's model with control flow): run it as is
        return model


class PETModule(pl.LightningModule):
    """The PET model of ``arch`` with the ensemble loss (eq. 6) — or, for a baseline
    method, its one ANN fine-tuned with the same loss, epochs and optimizer.

    Every batch runs the frozen teacher (eval mode) and every path; logs the ensemble loss,
    each path's loss and accuracy (``train/acc_l8``, ``val/acc_l4``, ...) and ``val/acc``
    (the major path); a detector's mAP@0.5 on the validation batches only (``val/map50``).
    :meth:`export_qann` gives the major path as a plain network and :meth:`to_spiking`
    converts it as the method does.

    Args:
        arch: ``{"name": ..., "num_classes": ..., ...}`` for
            :func:`spikezip.models.build_model`; rebuilds the network from a checkpoint.
        config: the PET settings (levels, loss, sharing schemes, optimizer).
        teacher: the trained full-precision ANN; the QANN starts from its weights.
            Omitted when restoring a checkpoint (its weights are in the state dict).
        method: the conversion method (default: SpikeZIP).
        inputs: ``{"pixels": ..., "shape": [...]}``, the dataset's pixel format
            (:class:`spikezip.data.DatasetInfo`) and one sample's shape: what
            ``pet.weight_bits`` needs.
    """

    def __init__(
        self,
        arch: dict,
        config: PETConfig | dict | None = None,
        teacher: nn.Module | None = None,
        method: MethodConfig | dict | None = None,
        inputs: dict | None = None,
    ):
        super().__init__()
        if not isinstance(config, PETConfig):
            config = PETConfig(**(config or {}))
        if not isinstance(method, MethodConfig):
            method = MethodConfig(**(method or {}))
        hparams = {"arch": arch, "pet": to_plain(config), "method": to_plain(method)}
        if inputs is not None:
            hparams["inputs"] = inputs
        self.save_hyperparameters(hparams)
        self.config, self.method = config, method
        teacher = copy.deepcopy(teacher) if teacher is not None else build_model(**arch)
        self.conversion = method_of(method)
        self.pet = fine_tuning_model(teacher, config, self.conversion, method, inputs)
        self.teacher = teacher.eval().requires_grad_(False)
        task = task_for(arch)
        if not self.conversion.ensemble:  # one path: its weight in eq. 6 is 1
            config = dataclasses.replace(config, levels=self.pet.levels)
        self.loss = EnsembleLoss(config, task)
        self.score = task.score_name  # acc, or a detector's map50
        self.optim = config.optimizer
        self.names = self.conversion.path_names(self.pet.levels)
        self.automatic_optimization = False  # see training_step
        stages = ("train", "val") if task.score_on_training else ("val",)
        keys = [f"{stage}_{name}" for stage in stages for name in self.names]
        # val/acc repeats the major path's accuracy under a name that does not depend on
        # the levels (for checkpoint monitoring); a metric object is logged under one name.
        self.accuracy = nn.ModuleDict({key: task.metric() for key in [*keys, "val_major"]})

    def on_fit_start(self) -> None:
        # The teacher never changes while it teaches: an inference copy with batch-norm
        # folded into its convs does the same forward with fewer passes. Built here, after
        # any checkpoint restore, so it holds the teacher's final weights.
        # Kept in a tuple so it is not a registered submodule: checkpoints hold the teacher
        # once, and a resumed run's module (built before restore) matches them.
        self._inference_teacher = (fuse_for_inference(self.teacher),)

    def teacher_logits(self, x: Tensor) -> Tensor:
        held = getattr(self, "_inference_teacher", None)
        teacher = held[0] if held else self.teacher
        with torch.no_grad():
            return teacher(x)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher's batch-norm never leaves inference mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.pet(x)

    def export_qann(self) -> nn.Module:
        """The major path as a plain network (for SpikeZIP a QANN ``to_snn`` converts
        exactly); with ``pet.weight_bits`` the integer QANN of it (its float source as
        ``.source``)."""
        return export_network(self.pet)

    def to_spiking(self, qann: nn.Module, encoding, calibration=None) -> SpikingNetwork:
        """The SNN of an exported network, as the method converts it (the rate method
        calibrates its thresholds on ``calibration`` batches, which it then needs)."""
        if self.conversion.calibrates and calibration is None:
            raise ValueError(
                f"the {self.conversion.name} method sets its thresholds on training batches: "
                "give them as calibration "
                "(SNNConversionCallback(calibration=calibration_data(train)))"
            )
        return self.conversion.convert(
            qann, encoding=encoding, calibration=calibration, settings=self.method
        )

    def _log_paths(self, stage: str, y: Tensor, result: PathsResult) -> None:
        log = {"on_epoch": True, "on_step": False, "sync_dist": True}  # means over processes
        self.log(f"{stage}/loss", result.loss, prog_bar=stage == "train", **log)
        for name, logits, term in zip(self.names, result.logits, result.terms, strict=True):
            self.log(f"{stage}/loss_{name}", term, **log)
            if f"{stage}_{name}" in self.accuracy:  # a detector scores validation only
                metric = self.accuracy[f"{stage}_{name}"]
                metric.update(logits.detach(), y)
                bar = name == self.names[0]
                self.log(f"{stage}/{self.score}_{name}", metric, prog_bar=bar, **log)

    def training_step(self, batch, batch_idx):
        # Manual optimization: each path runs forward and backward in turn (one path's
        # activations in memory, not all), through manual_backward (precision, scaling).
        x, y = batch
        optimizer = self.optimizers()
        optimizer.zero_grad()
        result = backward_paths(
            self.pet, self.loss, x, y, self.teacher_logits(x), self.manual_backward
        )
        optimizer.step()  # clips in on_before_optimizer_step, after any AMP unscaling
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self._log_paths("train", y, result)
        return result.loss  # detached; for the divergence guard

    def on_before_optimizer_step(self, optimizer) -> None:
        # Called inside optimizer.step(), after mixed precision unscaled the gradients:
        # clipping earlier would clip the scaled ones.
        if self.optim.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.optim.grad_clip)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.pet.forward_paths(x)
        terms = self.loss.per_path(logits, y, self.teacher_logits(x))
        self._log_paths("val", y, PathsResult(self.loss.combine(terms), terms, logits))
        self.accuracy["val_major"].update(logits[0], y)
        self.log(f"val/{self.score}", self.accuracy["val_major"], on_epoch=True, on_step=False)

    def configure_optimizers(self):
        return configure(self.pet, self.optim, self.trainer.estimated_stepping_batches)
