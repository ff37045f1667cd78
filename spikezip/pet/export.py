"""From a PET training checkpoint to the exported QANN, without Lightning or the trainer."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from spikezip.io import CheckpointError, load_checkpoint
from spikezip.methods import method_of, settings_of
from spikezip.models import build_model
from spikezip.pet.config import PETConfig
from spikezip.pet.paths import export_network, fine_tuning_model


def export_from_checkpoint(path: str | Path) -> nn.Module:
    """The major path of the PET model saved in a ``PETModule`` checkpoint, as a plain QANN
    (for a baseline method, its fine-tuned ANN; trained with ``pet.weight_bits``, the
    integer QANN).

    The network is rebuilt from the checkpoint's hyper-parameters (``arch``, the ``pet``
    and ``method`` settings) and its ``pet.*`` weights; the teacher and optimizer are ignored.
    """
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "arch" not in hparams or "pet" not in hparams:
        raise CheckpointError(
            f"checkpoint {path} is not a SpikeZIP PET checkpoint: it has no 'arch' / 'pet' "
            "hyper-parameters"
        )
    config = PETConfig(**hparams["pet"])
    settings = settings_of(hparams.get("method"))
    model = build_model(**hparams["arch"])
    inputs = hparams.get("inputs")
    pet = fine_tuning_model(model, config, method_of(settings), settings, inputs)
    weights = {k: v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith("pet.")}
    consume_prefix_in_state_dict_if_present(weights, "pet.")
    try:
        pet.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not match its own architecture: {err}"
        ) from err
    return export_network(pet)
