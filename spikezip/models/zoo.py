"""Any torchvision classifier, built exactly as torchvision defines it.

:func:`spikezip.quant.to_qann` makes such a network convertible as it is (one neuron per
activation call site, functional ReLUs and max-pools as modules, ReLU6 as a Q-ReLU with a
learned clip), so nothing here rewrites it.
"""

from __future__ import annotations

import difflib

from torch import nn

from spikezip.models.pretrained import load_torchvision_weights

LIST_HINT = (
    'python -c "import torchvision; print(torchvision.models.list_models(torchvision.models))"'
)


def classifier_names() -> list[str]:
    """The names of torchvision's image classifiers (``torchvision.models`` itself; not
    its detection, segmentation, video or quantized sub-packages)."""
    # torchvision loads only for its own models and weights.
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def check_classifier(name: str) -> str:
    """``name`` if torchvision has a classifier of that name.

    Raises:
        ValueError: an unknown name, with the closest ones and how to list them all.
    """
    names = classifier_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"torchvision has no classifier {name!r}{hint}; list them with {LIST_HINT}"
        )
    return name


def torchvision_classifier(
    name: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    width: float = 1.0,
    pretrained: bool = False,
    library: str = "torchvision",
) -> nn.Module:
    """torchvision's classifier ``name`` with ``num_classes`` outputs (random weights, or
    its default ImageNet weights with ``pretrained``).

    Raises:
        ValueError: an unknown name, a width other than 1 or inputs that are not RGB.
    """
    # torchvision loads only for its own models and weights.
    import torchvision

    check_classifier(name)
    if in_channels != 3:
        raise ValueError(
            f"torchvision's {name} takes 3-channel (RGB) images; this data has {in_channels}"
        )
    if width != 1.0:
        raise ValueError(
            "model.width scales SpikeZIP's own models; torchvision's are built as torchvision "
            f"defines them (got width={width})"
        )
    model = torchvision.models.get_model(name, num_classes=num_classes)
    if pretrained:
        load_torchvision_weights(model, name)
    return model
