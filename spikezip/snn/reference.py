"""The ANN side of every comparison: its output and the activations the neurons stand for."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def run_with_activations(
    model: nn.Module, x: Tensor, names: Iterable[str]
) -> tuple[Tensor, dict[str, Tensor]]:
    """``(output, {name: output of the submodule called name})`` of one eval-mode forward.

    The SNN's neuron layers keep the names of the activations they replace, so
    ``names = snn.neurons`` captures exactly the values the neurons must reproduce.

    Raises:
        KeyError: a name that is not a submodule of ``model``.
    """
    names = list(names)
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"SNN neuron layer '{missing[0]}' has no activation of that name in the ANN")
    captured: dict[str, Tensor] = {}
    hooks = [
        modules[name].register_forward_hook(
            # A copy: an in-place activation after the layer (nn.Hardswish(inplace=True))
            # would overwrite the very tensor the layer returned.
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.clone())
        )
        for name in names
    ]
    was_training = model.training
    try:
        model.eval()
        output = model(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return output, captured
