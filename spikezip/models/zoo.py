"""Any torchvision classifier or timm model, built exactly as its library defines it.

:func:`spikezip.quant.to_qann` makes such a network convertible as it is (one neuron per
activation call site, functional ReLUs and max-pools as modules, ReLU6 as a Q-ReLU with a
learned clip; attention written out and quantizers placed for transformers, GELU, SiLU,
LayerNorm and gates), so nothing here rewrites it.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from spikezip.models.pretrained import load_torchvision_weights

# torchvision classifiers whose graph has control flow on the input's size.
SHAPE_TRACED = ("swin_",)
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
    image_size: int | None = None,
) -> nn.Module:
    """torchvision's classifier ``name`` with ``num_classes`` outputs (random weights, or
    its default ImageNet weights with ``pretrained``); a ViT is built for ``image_size``
    (its patch size must divide it).

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
    sized = name.startswith("vit_")  # built for an input size
    kwargs = {"image_size": image_size} if sized and image_size is not None else {}
    model = torchvision.models.get_model(name, num_classes=num_classes, **kwargs)
    if pretrained:
        load_torchvision_weights(model, name)
    if name.startswith(SHAPE_TRACED):
        # Swin's window attention branches on the feature map's size: to_qann traces it
        # with an input of the data's size (spikezip.quant.morph), for which it converts.
        size = image_size or 224
        model.example_input = torch.zeros(1, 3, size, size)
    return model


def check_timm(name: str) -> str:
    """``name`` if timm has a model of that name.

    Raises:
        ValueError: an unknown name, with the closest ones and how to list them all.
    """
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"timm has no model {name!r}{hint}; list them with "
            "python -c \"import timm; print(timm.list_models('*vit*'))\""
        )
    return name


def timm_model(
    name: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int | None = None,
    width: float = 1.0,
    pretrained: bool = False,
    library: str = "timm",
) -> nn.Module:
    """timm's model ``name`` with ``num_classes`` outputs and ``in_channels`` input
    channels; a model with an input size of its own (a ViT) is built for ``image_size``.
    ``pretrained``: timm's default weights (from the Hugging Face Hub: needs internet).

    Raises:
        ValueError: an unknown name or a width other than 1; RuntimeError: pretrained
            weights that cannot be fetched.
    """
    import timm

    check_timm(name)
    if width != 1.0:
        raise ValueError(
            "model.width scales SpikeZIP's own models; timm's are built as timm defines them "
            f"(got width={width})"
        )
    kwargs = {"num_classes": num_classes, "in_chans": in_channels}
    try:
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=image_size, **kwargs)
        except TypeError:  # a model without an input size of its own (a CNN)
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not fetch timm's {name} weights: {err}. timm downloads them from the "
            "Hugging Face Hub; run once with internet (they are cached) or train a teacher"
        ) from err
