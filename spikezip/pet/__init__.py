"""Paths-ensemble training: multi-level Q-ReLU, per-path batch-norm, the ensemble loss."""

from spikezip.pet.config import Label, PETConfig, Sharing
from spikezip.pet.export import export_from_checkpoint
from spikezip.pet.loss import EnsembleLoss
from spikezip.pet.paths import PathBatchNorm, PathQReLU, PETModel, to_pet
from spikezip.pet.step import PathsResult, backward_paths

__all__ = [
    "EnsembleLoss",
    "Label",
    "PETConfig",
    "PETModel",
    "PathBatchNorm",
    "PathQReLU",
    "PathsResult",
    "Sharing",
    "backward_paths",
    "export_from_checkpoint",
    "to_pet",
]
