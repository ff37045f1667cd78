"""SNN-friendly morphing (paper §3.1 step 1): ReLU -> Q-ReLU, max-pool -> average-pool.

:func:`morph` is the shared part (pooling, refusals, the conversion's rules); each method
chooses what its ReLUs become: SpikeZIP's Q-ReLU (:func:`to_qann`), QCFS's clip-floor-shift
activation, or nothing, for a rate-coded conversion of the ReLU network itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from spikezip.convertible import check_graph
from spikezip.quant.qrelu import QReLU, check_levels
from spikezip.tracing import (
    UnsupportedLayerError,
    describe,
    hidden_nonlinearities,
    shared_call_sites,
    trace,
)

# Activations with no spiking counterpart: only a ReLU (quantized or not) becomes a
# neuron, so these are refused rather than approximated.
_UNSUPPORTED_ACTIVATIONS = (
    nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Hardswish, nn.Sigmoid, nn.Tanh, nn.ELU, nn.SELU,
    nn.CELU, nn.Mish, nn.PReLU, nn.ReLU6, nn.Hardtanh, nn.Softplus, nn.Hardsigmoid,
    nn.RReLU, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.GLU,
)  # fmt: skip

_AVG_POOL = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}
_ADAPTIVE_AVG_POOL = {
    nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d,
}


def _morph_module(name: str, module: nn.Module, activation: Callable[[], nn.Module] | None):
    """The SNN-friendly replacement of one module, or None to keep it."""
    if type(module) is nn.ReLU:
        return activation() if activation is not None else None
    if isinstance(module, _UNSUPPORTED_ACTIVATIONS):
        raise UnsupportedLayerError(
            f"{type(module).__name__} at '{name}' has no spiking equivalent: only ReLU "
            "becomes a spiking neuron. Replace it with nn.ReLU and retrain the ANN."
        )
    pool = _AVG_POOL.get(type(module))
    if pool is not None:
        if module.return_indices or any(d != 1 for d in _as_tuple(module.dilation)):
            raise UnsupportedLayerError(
                f"{type(module).__name__} at '{name}' uses dilation or return_indices; "
                "average pooling has no such geometry. Use a plain max-pool."
            )
        # count_include_pad=False: a border window averages only real inputs, as the
        # max-pool (padding with -inf) looked only at real inputs. Both are linear.
        return pool(
            module.kernel_size,
            module.stride,
            module.padding,
            ceil_mode=module.ceil_mode,
            count_include_pad=False,
        )
    pool = _ADAPTIVE_AVG_POOL.get(type(module))
    if pool is not None:
        if module.return_indices:
            raise UnsupportedLayerError(
                f"{type(module).__name__} at '{name}' uses return_indices; not convertible."
            )
        return pool(module.output_size)
    return None


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _check_hidden(model: nn.Module) -> None:
    """Refuse activations that hide from module swapping (functional calls, shared modules)."""
    gm = trace(model)
    hidden = hidden_nonlinearities(gm)
    if hidden:
        more = f" ({len(hidden) - 1} more after it)" if len(hidden) > 1 else ""
        raise UnsupportedLayerError(
            f"{describe(hidden[0])}{more} applies a non-linearity inside forward(), where "
            "module morphing cannot see it. Use an nn.ReLU module (or nn.MaxPool2d) instead "
            "of the functional call."
        )
    for name, calls in shared_call_sites(gm, (nn.ReLU,)).items():
        raise UnsupportedLayerError(
            f"activation '{name}' is called at {calls} places in forward(). A spiking neuron "
            "keeps state per call site, so give each call its own nn.ReLU (ReLU has no "
            "parameters, so pretrained weights still load)."
        )


def morph(
    model: nn.Module,
    activation: Callable[[], nn.Module] | None = None,
    activation_type: type[nn.Module] = nn.ReLU,
) -> nn.Module:
    """An SNN-friendly copy of ``model`` (the input is untouched): every ``nn.ReLU``
    becomes ``activation()`` (kept when None), ``MaxPool{1,2,3}d`` an ``AvgPool`` of the
    same kernel, stride and padding, adaptive max-pool an adaptive average-pool.

    The result is checked against the conversion's rules (:mod:`spikezip.convertible`),
    with ``activation_type`` as the module that becomes a neuron: a layer the converter
    would refuse (a ``LayerNorm``, a batch-norm without running statistics, a product of
    branches, ...) is refused here, before any training.

    Raises:
        UnsupportedLayerError: a layer or operation that cannot be converted, named by its
            path.
    """
    result = copy.deepcopy(model)
    _check_hidden(result)
    for name, module in list(result.named_modules()):
        replacement = _morph_module(name, module, activation)
        if replacement is not None:
            result.set_submodule(name, replacement)
    check_graph(trace(result), activation_type)
    return result


def to_qann(model: nn.Module, levels: int, scale: float | None = None) -> nn.Module:
    """A morphed copy of ``model`` (see :func:`morph`), ready for QANN training:
    ``nn.ReLU`` -> :class:`QReLU` with ``levels`` levels (and initial ``scale``, else LSQ's
    data init on the first training batch).

    Raises:
        UnsupportedLayerError: a layer or operation that cannot be made exact, named by its
            path.
    """
    levels = check_levels(levels)
    return morph(model, lambda: QReLU(levels, scale), QReLU)
