"""Paths-ensemble training: multi-level Q-ReLU, per-path batch-norm, the ensemble loss."""

from spikezip.pet.checkpoint import CheckpointError, export_from_checkpoint, load_checkpoint
from spikezip.pet.loss import LABELS, EnsembleLoss
from spikezip.pet.paths import SHARING, PathBatchNorm, PathQReLU, PETModel, to_pet
from spikezip.pet.step import PathsResult, backward_paths

__all__ = [
    "LABELS",
    "SHARING",
    "CheckpointError",
    "EnsembleLoss",
    "PETModel",
    "PathBatchNorm",
    "PathQReLU",
    "PathsResult",
    "backward_paths",
    "export_from_checkpoint",
    "load_checkpoint",
    "to_pet",
]
