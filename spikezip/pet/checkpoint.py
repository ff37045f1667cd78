"""From a PET training checkpoint to the exported QANN, without Lightning or the trainer."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from spikezip.models import build_model
from spikezip.pet.paths import to_pet
from spikezip.quant import to_qann


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a SpikeZIP PET checkpoint."""


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load`` (weights only) with errors that name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file: {err}") from err


def export_from_checkpoint(path: str | Path) -> nn.Module:
    """The major path of the PET model saved in a ``PETModule`` checkpoint, as a plain QANN.

    The network is rebuilt from the checkpoint's hyper-parameters (``arch``, ``levels``,
    sharing schemes) and its ``pet.*`` weights; the teacher and optimizer are ignored.
    """
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "arch" not in hparams or "levels" not in hparams:
        raise CheckpointError(
            f"checkpoint {path} is not a SpikeZIP PET checkpoint: it has no 'arch' / 'levels' "
            "hyper-parameters"
        )
    levels = list(hparams["levels"])
    pet = to_pet(
        to_qann(build_model(**hparams["arch"]), levels[0]),
        levels,
        hparams.get("scale_sharing", "share"),
        hparams.get("bn_sharing", "share"),
    )
    weights = {k.removeprefix("pet."): v for k, v in (state or {}).items() if k.startswith("pet.")}
    try:
        pet.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not match its own architecture: {err}"
        ) from err
    return pet.export_major_path()
