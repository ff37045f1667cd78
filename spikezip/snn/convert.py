"""QANN -> SNN conversion (paper §3.1 steps 3-4): fuse batch-norm, Q-ReLU -> ST-BIF,
every affine operator stepped with its bias released evenly over ``T_off = n`` steps.

The neuron is a choice of the conversion (:class:`NeuronRule`: which activation becomes
which neuron), and so is the input/bias regime (:mod:`spikezip.snn.encoding`); the graph
checks, the batch-norm fusion and the simulator are the same for every choice.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from spikezip.quant.qrelu import QReLU
from spikezip.settings import choice
from spikezip.snn.encoding import Encoding, release_for
from spikezip.snn.layers import SpikingAffine, SpikingBatchNorm
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import STBIF, SpikingNeuron
from spikezip.tracing import (
    UnsupportedLayerError,
    describe,
    op_name,
    shared_call_sites,
    trace,
)


@dataclass(frozen=True)
class NeuronRule:
    """Which ANN activation module becomes a neuron, and how.

    ``build(name, activation)`` returns the neuron layer for the activation at ``name``
    (raising :class:`UnsupportedLayerError` if it cannot). The activation must have an
    integer ``levels`` attribute: the even release spreads the input over ``n`` steps.
    """

    activation: type[nn.Module]
    build: Callable[[str, nn.Module], SpikingNeuron]


def stbif_from_qrelu(name: str, qrelu: nn.Module) -> STBIF:
    """``QReLU(n, s)`` -> ``STBIF(Vthr=s, S_max=n, V0=s/2)``: exact at equilibrium."""
    scale = float(qrelu.scale.detach())
    if not (math.isfinite(scale) and scale > 0):
        raise UnsupportedLayerError(
            f"QReLU at '{name}' has scale {scale}: a neuron threshold must be positive "
            "and finite. Retrain, or set the scale, before converting."
        )
    if not bool(qrelu.initialized):
        warnings.warn(
            f"QReLU at '{name}' was never trained or initialised (scale {scale}); the SNN "
            "is exact, but for a network nobody trained.",
            stacklevel=5,
        )
    return STBIF(qrelu.scale.detach(), qrelu.levels)


# SpikeZIP's own rule: every Q-ReLU becomes an ST-BIF neuron.
ST_BIF = NeuronRule(QReLU, stbif_from_qrelu)

_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Linear maps with no bias: they commute with summing over time-steps as they are.
_LINEAR_KEEP = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity,
)  # fmt: skip
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_MAX_POOL = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip

# Functions / tensor methods that are linear in their tensor arguments (no constant term).
_LINEAR_OPS = frozenset(
    {
        "add", "iadd", "sub", "isub", "neg", "cat", "concat", "flatten", "reshape", "view",
        "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "getitem", "mean",
        "sum", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
        "adaptive_avg_pool2d", "adaptive_avg_pool3d", "size", "dim", "getattr", "chunk",
        "split", "expand", "repeat",
    }
)  # fmt: skip
# Scaling by a Python number is linear; by another tensor it is not.
_SCALE_OPS = frozenset({"mul", "imul", "truediv", "itruediv", "div"})
_ADD_OPS = frozenset({"add", "iadd", "sub", "isub"})


def _module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _fuse_batchnorm(gm: fx.GraphModule) -> None:
    """Fold each eval batch-norm into the conv / linear that alone feeds it."""
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        bn = _module_of(gm, node)
        if not isinstance(bn, _BATCHNORM) or bn.running_mean is None:
            continue
        prev = node.args[0]
        layer = _module_of(gm, prev) if isinstance(prev, fx.Node) else None
        if (
            not isinstance(layer, _WEIGHTED)
            or len(prev.users) != 1
            or calls[prev.target] != 1
            or calls[node.target] != 1
        ):
            continue
        if isinstance(layer, nn.Linear):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            fused = fuse_conv_bn_eval(layer, bn)
        gm.set_submodule(prev.target, fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)


def _convert_module(name: str, module: nn.Module, neuron: NeuronRule) -> nn.Module | None:
    """The spiking counterpart of one called module, or None to keep it unchanged."""
    if isinstance(module, neuron.activation):
        return neuron.build(name, module)
    if isinstance(module, _WEIGHTED):
        return SpikingAffine(module)
    if isinstance(module, _BATCHNORM):
        if module.running_mean is None:
            raise UnsupportedLayerError(
                f"{type(module).__name__} at '{name}' has track_running_stats=False, so it "
                "normalises with each batch's statistics and is not a fixed affine map."
            )
        return SpikingBatchNorm(module)
    if isinstance(module, _DROPOUT):
        return nn.Identity()
    if isinstance(module, _LINEAR_KEEP):
        return None
    if isinstance(module, nn.ReLU):
        hint = "run spikezip.quant.to_qann first, then train the QANN"
    elif isinstance(module, _MAX_POOL):
        hint = "max-pool is not linear; to_qann morphs it to average-pool before QANN training"
    elif isinstance(module, SpikingNeuron):
        hint = "this network is already spiking"
    else:
        hint = (
            f"only {neuron.activation.__name__}, conv, linear, batch-norm, average-pool, "
            "flatten, dropout and identity modules convert"
        )
    raise UnsupportedLayerError(
        f"{type(module).__name__} at '{name}' cannot be converted exactly: {hint}."
    )


def _check_function(node: fx.Node) -> None:
    """Refuse any function / method that is not linear in its tensor inputs."""
    name = op_name(node)
    # alpha (torch.add's multiplier) scales a tensor; every other operand must be a tensor.
    operands = [*node.args, *(v for k, v in node.kwargs.items() if k != "alpha")]
    tensors = [a for a in operands if isinstance(a, fx.Node)]
    constants = [a for a in operands if not isinstance(a, (fx.Node, type(None)))]
    if name in _ADD_OPS and constants:
        raise UnsupportedLayerError(
            f"{describe(node)} adds a constant: a bias outside a conv/linear layer, which "
            "the converter cannot release over time. Fold it into a layer's bias."
        )
    if name in _LINEAR_OPS:
        return
    if (
        name in _SCALE_OPS
        and len(tensors) == 1
        and all(isinstance(c, (int, float)) for c in constants)
    ):
        if name in ("truediv", "itruediv", "div") and node.args[0] is not tensors[0]:
            raise UnsupportedLayerError(f"{describe(node)} divides by a tensor: not linear.")
        return
    raise UnsupportedLayerError(
        f"{describe(node)} cannot be converted exactly: between two neuron layers only "
        "linear operations (conv, linear, batch-norm, average-pool, flatten, residual add, "
        "scaling by a constant) are allowed. A functional activation such as F.relu must "
        "be an nn.ReLU module so to_qann can morph it."
    )


def to_snn(
    qann: nn.Module,
    encoding: Encoding | str = Encoding.even,
    release_steps: int | None = None,
    *,
    neuron: NeuronRule = ST_BIF,
) -> SpikingNetwork:
    """Convert a QANN (a model whose activations are :class:`QReLU`) to its exact SNN.

    Works on a copy in eval mode. Batch-norm is fused into the conv / linear before it;
    each ``QReLU(n, s)`` becomes ``STBIF(Vthr=s, S_max=n, V0=s/2)``; every other layer
    must be affine and is stepped with its bias released over the first ``T_off`` steps,
    like the input.

    Args:
        qann: the trained QANN (``torch.fx``-traceable).
        encoding: ``"even"`` releases input and biases as ``1/n`` shares over steps
            ``1..n`` (the paper's scheme, ``n`` the largest Q-ReLU level); ``"once"``
            releases everything at step 1. Both are exact at equilibrium.
            ``"constant"`` feeds them whole on every step (rate-coded baselines).
        release_steps: override ``T_off`` for ``"even"``.
        neuron: which activation becomes which neuron (default: Q-ReLU -> ST-BIF). A
            baseline supplies its own, e.g. an IF neuron for a clip-floor activation.

    Raises:
        UnsupportedLayerError: a layer or operation that cannot be converted, named.
    """
    encoding = choice("encoding", encoding, Encoding)
    model = copy.deepcopy(qann).eval()
    gm = trace(model)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(
            f"the network's forward takes {len(placeholders)} inputs; the SNN encodes exactly one"
        )
    activation = neuron.activation.__name__
    for name, calls in shared_call_sites(gm, (neuron.activation,)).items():
        raise UnsupportedLayerError(
            f"{activation} '{name}' is called at {calls} places in forward(); each call site "
            "needs its own neuron state. Give every call its own activation module."
        )
    levels = [m.levels for m in gm.modules() if isinstance(m, neuron.activation)]
    _fuse_batchnorm(gm)
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            new = _convert_module(node.target, gm.get_submodule(node.target), neuron)
            if new is not None:
                gm.set_submodule(node.target, new)
        elif node.op in ("call_function", "call_method"):
            _check_function(node)
        elif node.op == "get_attr":
            raise UnsupportedLayerError(
                f"forward() reads the tensor attribute '{node.target}' directly (graph node "
                f"'{node.name}'); wrap parameters in conv / linear modules so their bias "
                "can be released."
            )
        elif node.op == "output" and not isinstance(node.args[0], fx.Node):
            raise UnsupportedLayerError("the network must return a single tensor")
    if not levels:
        raise UnsupportedLayerError(
            f"the network has no {activation}: convert the ANN with spikezip.quant.to_qann "
            "and train it before building its SNN"
        )
    gm.delete_all_unused_submodules()
    gm.recompile()
    return SpikingNetwork(gm, release_for(encoding, max(levels), release_steps), encoding)
