"""Loading torchvision's ImageNet weights into SpikeZIP's models (same parameter names)."""

from __future__ import annotations

from torch import nn


def load_torchvision_weights(model: nn.Module, arch: str) -> nn.Module:
    """Load torchvision's default ImageNet weights for ``arch`` (e.g. ``"resnet34"``) into
    ``model`` in place. Needs internet on first use; torchvision caches the file under
    ``$TORCH_HOME/hub/checkpoints``.

    Raises:
        RuntimeError: the weights cannot be fetched, or the model's shapes differ
            (``num_classes`` other than 1000, or a width multiplier other than 1).
    """
    # torchvision loads only for its own models and weights.
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        state = weights.get_state_dict(progress=True)
    except Exception as err:  # URLError, HTTPError, ...: say what to do, keep the cause
        raise RuntimeError(
            f"could not fetch torchvision's {arch} weights ({weights.url}): {err}. Download the "
            "file on a machine with internet into $TORCH_HOME/hub/checkpoints/."
        ) from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise RuntimeError(
            f"torchvision's {arch} weights do not fit this model (pretrained weights need "
            f"num_classes=1000 and width=1.0): {err}"
        ) from err
    return model
