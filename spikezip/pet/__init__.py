"""Paths-ensemble training: multi-level Q-ReLU, per-path batch-norm, the ensemble loss."""

from spikezip.pet.loss import LABELS, EnsembleLoss
from spikezip.pet.paths import SHARING, PathBatchNorm, PathQReLU, PETModel, to_pet

__all__ = ["LABELS", "SHARING", "EnsembleLoss", "PETModel", "PathBatchNorm", "PathQReLU", "to_pet"]
