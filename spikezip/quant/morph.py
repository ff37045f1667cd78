"""SNN-friendly morphing (paper §3.1 step 1): ReLU -> Q-ReLU, max-pool -> average-pool."""

from __future__ import annotations

import copy

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

# Activations with no exact spiking counterpart: a Q-ReLU is the only one an ST-BIF
# neuron reproduces, so these are refused rather than approximated.
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


def _morph_module(name: str, module: nn.Module, levels: int, scale: float | None):
    """The SNN-friendly replacement of one module, or None to keep it."""
    if type(module) is nn.ReLU:
        return QReLU(levels, scale)
    if isinstance(module, _UNSUPPORTED_ACTIVATIONS):
        raise UnsupportedLayerError(
            f"{type(module).__name__} at '{name}' has no exact spiking equivalent: only ReLU "
            "becomes a Q-ReLU / ST-BIF neuron. Replace it with nn.ReLU and retrain the ANN."
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
    for name, calls in shared_call_sites(gm, (nn.ReLU, QReLU)).items():
        raise UnsupportedLayerError(
            f"activation '{name}' is called at {calls} places in forward(). A spiking neuron "
            "keeps state per call site, so give each call its own nn.ReLU (ReLU has no "
            "parameters, so pretrained weights still load)."
        )


def to_qann(model: nn.Module, levels: int, scale: float | None = None) -> nn.Module:
    """A morphed copy of ``model`` (the input is untouched), ready for QANN training.

    ``nn.ReLU`` -> :class:`QReLU` with ``levels`` levels (and initial ``scale``, else LSQ's
    data init on the first training batch); ``MaxPool{1,2,3}d`` -> ``AvgPool`` of the same
    kernel, stride and padding; adaptive max-pool -> adaptive average-pool.

    The morphed network is checked against the conversion's rules
    (:mod:`spikezip.convertible`) before it is returned: a layer ``to_snn`` would refuse
    (a ``LayerNorm``, a batch-norm without running statistics, a product of branches, ...)
    is refused here, before any training.

    Raises:
        UnsupportedLayerError: a layer or operation that cannot be made exact, named by its
            path.
    """
    levels = check_levels(levels)
    qann = copy.deepcopy(model)
    _check_hidden(qann)
    for name, module in list(qann.named_modules()):
        replacement = _morph_module(name, module, levels, scale)
        if replacement is not None:
            qann.set_submodule(name, replacement)
    check_graph(trace(qann), QReLU)
    return qann
