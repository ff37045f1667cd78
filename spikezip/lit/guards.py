"""What makes a training stage survive: an atomic checkpoint after every epoch, a stop at
the first non-finite loss, weight or validation metric (before anything of that epoch is
saved), and seeds fixed per epoch so a resumed run repeats an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from spikezip.errors import SpikeZIPError, few
from spikezip.io import atomic_write


class DivergenceError(SpikeZIPError, RuntimeError):
    """A training stage whose loss or weights stopped being finite; nothing of it was saved."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written through a temporary file and a rename: a run killed
    while saving keeps its previous checkpoint, never half a new one."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        save = super().save_checkpoint
        atomic_write(path, lambda tmp: save(checkpoint, tmp, storage_options))


def epoch_checkpoint(directory: str | Path) -> ModelCheckpoint:
    """``directory/last.ckpt``, rewritten after every epoch (after its validation).

    ``save_last`` alone writes nothing before the fit ends when no other checkpoint is
    kept; one checkpoint named ``last`` without a version counter is rewritten instead.
    """
    return ModelCheckpoint(
        dirpath=directory, filename="last", save_top_k=1, enable_version_counter=False
    )


class EpochSeed(pl.Callback):
    """Seeds every RNG with ``seed + epoch`` when an epoch starts, so its data order,
    augmentation and dropout do not depend on what ran before it in this process."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl.seed_everything(self.seed + trainer.current_epoch, workers=True, verbose=False)


class DivergenceGuard(pl.Callback):
    """Stops a stage at the first step whose loss or weights are not finite, or whose
    quantization steps (a module's ``positive_parameters``) are not positive, and at the
    end of an epoch whose weights, buffers (batch-norm statistics) or validation metrics
    are not finite, before any checkpoint of that epoch is written (Lightning runs
    checkpoint callbacks last), with an error that says where and what to try. A step
    can look finite while its update is not: a huge learning rate leaves finite weights
    whose validation loss is NaN.

    ``label`` names the stage in the message; ``key`` is its config prefix (``teacher``
    or ``pet``) and ``lr`` its learning rate, for the advice. The module's
    ``training_step`` must return its loss (a tensor or ``{"loss": ...}``).
    """

    def __init__(self, label: str, *, key: str, lr: float):
        self.label, self.key, self.lr = label, key, lr

    def _fail(self, trainer: pl.Trainer, what: str) -> None:
        raise DivergenceError(
            f"the {self.label} diverged at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch + 1}): {what}. Nothing of this epoch was saved. Try a "
            f"lower learning rate ({self.key}.optimizer.lr={self.lr:g} now) or gradient "
            f"clipping ({self.key}.optimizer.grad_clip=1.0), in a new run directory."
        )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Quantization steps (a Q-ReLU's scale, a PET path's scales, a QCFS threshold) must
        # stay positive: each such module names them in ``positive_parameters``.
        self._scales = {}
        for name, module in pl_module.named_modules():
            for attr in getattr(module, "positive_parameters", ()):
                value = getattr(module, attr)
                if isinstance(value, nn.ParameterList):
                    self._scales.update({f"{name}.{attr}.{i}": p for i, p in enumerate(value)})
                else:
                    self._scales[f"{name}.{attr}"] = value

    def _check_state(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Every floating-point parameter and buffer finite (one device sync)."""
        tensors = dict(pl_module.named_parameters())
        tensors.update(pl_module.named_buffers())
        tensors = {n: t for n, t in tensors.items() if t.is_floating_point()}
        if not tensors:
            return
        if bool(torch.stack([torch.isfinite(t).all() for t in tensors.values()]).all()):
            return
        names = [n for n, t in tensors.items() if not torch.isfinite(t).all()]
        self._fail(trainer, f"the weights or statistics {few(names)} are not finite")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_state(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._check_state(trainer, pl_module)
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if "val" in key.split("/") and not torch.isfinite(torch.as_tensor(value)).all()
        }
        if metrics:
            listed = ", ".join(f"{key} = {value}" for key, value in metrics.items())
            self._fail(trainer, f"its validation metrics are not finite ({listed})")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        checks = [torch.isfinite(p).all() for p in pl_module.parameters() if p.requires_grad]
        checks += [(p > 0).all() for p in self._scales.values()]
        if loss is not None:
            checks.append(torch.isfinite(loss.detach()).all())
        if not checks or bool(torch.stack(checks).all()):  # one device sync per step
            return
        if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
            self._fail(trainer, f"the loss is {float(loss.detach().float().mean())}")
        names = [n for n, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if names:
            self._fail(trainer, f"the weights {few(names)} are not finite")
        scales = {n: float(p.detach().min()) for n, p in self._scales.items() if not (p > 0).all()}
        self._fail(trainer, f"the quantization steps {scales} are no longer positive")
