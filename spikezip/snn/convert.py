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

from spikezip.convertible import BATCHNORM, WEIGHTED, Kind, check_graph
from spikezip.quant.qrelu import QReLU
from spikezip.settings import choice
from spikezip.snn.encoding import Encoding, release_for
from spikezip.snn.layers import SpikingAffine, SpikingBatchNorm
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import STBIF, SpikingNeuron
from spikezip.tracing import UnsupportedLayerError, trace


@dataclass(frozen=True)
class NeuronRule:
    """Which ANN activation module becomes a neuron, and how.

    ``build(name, activation)`` returns the neuron layer for the activation at ``name``
    (raising :class:`UnsupportedLayerError` if it cannot). With ``"even"`` encoding the
    input is spread over ``n`` steps, ``n`` the largest integer ``levels`` attribute of the
    activations (1 for an activation without one).
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
            stacklevel=4,
        )
    return STBIF(qrelu.scale.detach(), qrelu.levels)


# SpikeZIP's own rule: every Q-ReLU becomes an ST-BIF neuron.
ST_BIF = NeuronRule(QReLU, stbif_from_qrelu)


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
        if not isinstance(bn, BATCHNORM) or bn.running_mean is None:
            continue
        prev = node.args[0]
        layer = _module_of(gm, prev) if isinstance(prev, fx.Node) else None
        if (
            not isinstance(layer, WEIGHTED)
            or len(prev.users) != 1
            or calls[prev.target] != 1
            or calls[node.target] != 1
        ):
            continue
        # Folded in float64 whatever the dtype: a float32 fold is off by ~1e-7, enough to
        # move a neuron whose input lies that close to a level boundary to the next level.
        # The float32 SNN is then the float64 one rounded once, whichever way it is built.
        dtype = layer.weight.dtype
        pair = copy.deepcopy(layer).double(), copy.deepcopy(bn).double()
        if isinstance(layer, nn.Linear):
            fused = fuse_linear_bn_eval(*pair)
        else:
            fused = fuse_conv_bn_eval(*pair)
        gm.set_submodule(prev.target, fused.to(dtype))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)


def _spiking(name: str, module: nn.Module, kind: Kind, neuron: NeuronRule) -> nn.Module | None:
    """The spiking counterpart of one called module, or None to keep it unchanged."""
    if kind is Kind.NEURON:
        return neuron.build(name, module)
    if kind is Kind.AFFINE:
        return SpikingAffine(module)
    if kind is Kind.BATCHNORM:
        return SpikingBatchNorm(module)
    if kind is Kind.DROPOUT:
        return nn.Identity()
    return None


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
    kinds = check_graph(gm, neuron.activation)  # before any change: errors name QANN layers
    # Only the even release needs n (an activation without levels never uses it).
    levels = [getattr(m, "levels", 1) for m in gm.modules() if isinstance(m, neuron.activation)]
    _fuse_batchnorm(gm)  # a fused conv keeps its name and kind; its batch-norm node is gone
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            new = _spiking(node.target, module, kinds[node.target], neuron)
            if new is not None:
                gm.set_submodule(node.target, new)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return SpikingNetwork(gm, release_for(encoding, max(levels), release_steps), encoding)
