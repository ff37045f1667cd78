"""QANN -> SNN conversion (paper §3.1 steps 3-4): fuse batch-norm, Q-ReLU -> ST-BIF,
every affine operator stepped with its bias released evenly over ``T_off = n`` steps.

The neuron is a choice of the conversion (:class:`NeuronRule`: which activation becomes
which neuron), and so is the input/bias regime (:mod:`spikezip.snn.encoding`); the graph
checks, the batch-norm fusion and the simulator are the same for every choice.
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten

from spikezip.convertible import _ADD_OPS, Kind, Plan, check_graph, fuse_batchnorm
from spikezip.quant.integer import IntQReLU, PixelLevels, is_integer
from spikezip.quant.qrelu import QReLU
from spikezip.settings import choice
from spikezip.snn.encoding import Encoding, release_for
from spikezip.snn.layers import ReleasedConstant, SpikingAffine, SpikingBatchNorm
from spikezip.snn.network import Backend, SpikingNetwork
from spikezip.snn.neuron import STBIF, IntegerSTBIF, SpikingNeuron
from spikezip.snn.operators import Accumulating, Elementwise, GradedNeuron
from spikezip.tracing import UnsupportedLayerError, describe, op_name, trace


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
    """``QReLU(n, s)`` -> ``STBIF(Vthr=s, S_max=n, V0=s/2)``, ``S_min = -n`` when the
    quantizer is signed (else 0): exact at equilibrium."""
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
    return STBIF(qrelu.scale.detach(), qrelu.levels, getattr(qrelu, "min_level", 0))


# SpikeZIP's own rule: every Q-ReLU becomes an ST-BIF neuron.
ST_BIF = NeuronRule(QReLU, stbif_from_qrelu)


def integer_stbif(name: str, q: nn.Module) -> IntegerSTBIF:
    """``IntQReLU(m, n)`` -> ``IntegerSTBIF(Vthr=m, S_max=n, V0=floor(m/2))``: bit-exact;
    its state in int32 where the quantizer's bound allows, else int64."""
    dtype = torch.int32 if q.register_bound < 2**31 else torch.int64
    return IntegerSTBIF(q.threshold.detach(), q.levels, q.min_level, dtype)


# An integer QANN's rule (pet.weight_bits): every integer Q-ReLU becomes an integer ST-BIF.
INTEGER_ST_BIF = NeuronRule(IntQReLU, integer_stbif)


def _take_input_map(gm: fx.GraphModule) -> nn.Module | None:
    """Remove the module that the input alone goes through first (an integer QANN's
    :class:`PixelLevels`) and return it: the SNN applies it before releasing the input."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1 or len(placeholders[0].users) != 1:
        return None
    (user,) = placeholders[0].users
    module = _module_of(gm, user)
    if not isinstance(module, PixelLevels):
        return None
    user.replace_all_uses_with(placeholders[0])
    gm.graph.erase_node(user)
    return module


def _module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


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


def _not_in_place(module: nn.Module) -> nn.Module:
    """``module``, or a copy with ``inplace=False``: an accumulating operator must not
    overwrite the totals it keeps."""
    if getattr(module, "inplace", False):
        module = copy.deepcopy(module)
        module.inplace = False
    return module


def _free_name(gm: fx.GraphModule, base: str) -> str:
    names = dict(gm.named_modules())
    name, k = base, 2
    while name in names:
        name, k = f"{base}_{k}", k + 1
    return name


def _call(gm: fx.GraphModule, node: fx.Node, base: str, module: nn.Module, args, kwargs):
    """A call of ``module`` (added as ``base``, or a free variant) replacing ``node``."""
    name = _free_name(gm, base)
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        return gm.graph.call_module(name, tuple(args), dict(kwargs))


def _graded(gm: fx.GraphModule, node: fx.Node) -> None:
    """Fold the elementwise ``node`` into the ST-BIF neuron it reads: graded spikes."""
    source = node.args[0]
    stbif = gm.get_submodule(source.target)
    if not isinstance(stbif, STBIF):
        raise UnsupportedLayerError(
            f"{describe(node)} follows '{source.target}', a {type(stbif).__name__}: only an "
            "ST-BIF neuron's spikes can carry an elementwise non-linearity (graded spikes)"
        )
    kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
    if node.op == "call_module":
        fn = _not_in_place(gm.get_submodule(node.target))
    else:
        fn = Elementwise(node.target, node.args[1:], kwargs)
    graded = GradedNeuron(stbif.threshold, stbif.levels, fn, stbif.tracer_min)
    gm.set_submodule(source.target, graded)
    node.replace_all_uses_with(source)
    gm.graph.erase_node(node)


def _release(gm: fx.GraphModule, node: fx.Node, plan: Plan) -> None:
    """Release the constants ``node`` adds to activations (or concatenates with them)."""

    def released(value):
        share = _call(gm, node, f"{node.name}_release", ReleasedConstant(), (value,), {})
        plan.streams.add(share.name)
        return share

    def constant(value) -> bool:
        if isinstance(value, fx.Node):
            return value.name not in plan.streams
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    args = list(node.args)
    if op_name(node) in _ADD_OPS:
        args[:2] = [released(a) if constant(a) else a for a in args[:2]]
        kwargs = {
            k: released(v) if k == "other" and constant(v) else v for k, v in node.kwargs.items()
        }
    else:  # a concatenation: the constant tensors of its list
        parts = node.args[0] if node.args else node.kwargs["tensors"]
        parts = [released(p) if isinstance(p, fx.Node) and constant(p) else p for p in parts]
        kwargs = dict(node.kwargs)
        if node.args:
            args[0] = parts
        else:
            kwargs["tensors"] = parts
    node.args, node.kwargs = tuple(args), kwargs


def _affine_function(gm: fx.GraphModule, node: fx.Node, plan: Plan) -> None:
    """``F.linear(x, W, b)`` / ``F.conv2d(x, W, b, ...)``: the bias is released like a
    layer's (``F.linear(x, W) + b / d`` on the releasing steps)."""
    args, kwargs = list(node.args), dict(node.kwargs)
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    if bias is None:
        return
    if len(args) > 2:
        args[2] = None
    else:
        kwargs["bias"] = None
    node.args, node.kwargs = tuple(args), kwargs
    name = _free_name(gm, f"{node.name}_release")
    gm.add_submodule(name, ReleasedConstant())
    with gm.graph.inserting_after(node):
        share = gm.graph.call_module(name, (bias,))
    with gm.graph.inserting_after(share):
        dims = {"conv1d": 1, "conv2d": 2, "conv3d": 3}.get(op_name(node), 0)
        shaped = gm.graph.call_method("view", (share, -1, *([1] * dims))) if dims else share
    with gm.graph.inserting_after(shaped):
        total = gm.graph.call_function(operator.add, (node, shaped))
    plan.streams.update((share.name, shaped.name, total.name))
    node.replace_all_uses_with(total, delete_user_cb=lambda user: user is not total)


def _accumulating(gm: fx.GraphModule, node: fx.Node, plan: Plan) -> None:
    """Run ``node`` on accumulated inputs (:class:`Accumulating`), one state per call."""
    kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
    leaves, _ = tree_flatten((list(node.args), kwargs))
    streams = [isinstance(a, fx.Node) and a.name in plan.streams for a in leaves]
    if node.op == "call_module":
        op = _not_in_place(gm.get_submodule(node.target))
        base, what = str(node.target), f"{type(op).__name__} at '{node.target}'"
        calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == node.target]
        if len(calls) == 1:  # its only call: the module becomes the operator, same name
            gm.set_submodule(base, Accumulating(op, streams, what))
            node.kwargs = kwargs
            return
    else:
        op, base, what = node.target, node.name, describe(node)
    call = _call(gm, node, base, Accumulating(op, streams, what), node.args, kwargs)
    plan.streams.add(call.name)  # what reads it later must know it carries activations
    node.replace_all_uses_with(call)
    gm.graph.erase_node(node)


def to_snn(
    qann: nn.Module,
    encoding: Encoding | str = Encoding.even,
    release_steps: int | None = None,
    *,
    neuron: NeuronRule = ST_BIF,
    backend: Backend | str = Backend.eager,
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
        backend: ``"eager"`` (the reference) or ``"compiled"`` (each neuron layer's step
            fused into one kernel by ``torch.compile``; identical results). See
            :meth:`SpikingNetwork.use_backend`.

    Raises:
        UnsupportedLayerError: a layer or operation that cannot be converted, named.
    """
    encoding = choice("encoding", encoding, Encoding)
    backend = choice("backend", backend, Backend)
    integer = is_integer(qann)
    if integer and neuron is ST_BIF:
        neuron = INTEGER_ST_BIF
    model = copy.deepcopy(qann).eval()
    gm = trace(model)
    input_map = _take_input_map(gm) if integer else None
    no_accumulating = None
    if encoding is Encoding.constant:
        no_accumulating = (
            "a rate-coded SNN (encoding 'constant') feeds its input on every step, so the "
            "input of an accumulating operator never settles"
        )
    # Before any change: errors name QANN layers, and so does the report of operators.
    plan = check_graph(gm, neuron.activation, no_accumulating)
    operators = plan.operators(gm)
    # Only the even release needs n (an activation without levels never uses it).
    levels = [getattr(m, "levels", 1) for m in gm.modules() if isinstance(m, neuron.activation)]
    fuse_batchnorm(gm)  # a fused conv keeps its name and kind; its batch-norm node is gone
    for node in list(gm.graph.nodes):
        kind = plan.nodes.get(node.name)
        if kind is None or kind is Kind.STATIC:
            continue
        if kind is Kind.GRADED:
            _graded(gm, node)
        elif kind is Kind.RELEASE:
            _release(gm, node, plan)
        elif kind is Kind.ACCUMULATE:
            _accumulating(gm, node, plan)
        elif kind is Kind.AFFINE and node.op == "call_function":
            _affine_function(gm, node, plan)
        elif node.op == "call_module":
            module = gm.get_submodule(node.target)
            new = _spiking(node.target, module, kind, neuron)
            if new is not None:
                gm.set_submodule(node.target, new)
        elif kind is Kind.DROPOUT:  # F.dropout(x, training=False): the identity
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    release = release_for(encoding, max(levels), release_steps, integer=integer)
    snn = SpikingNetwork(gm, release, encoding)
    snn.operators = operators
    if integer:  # what the hardware report reads
        snn.input_map = input_map
        snn.weight_bits, snn.bias_bits = qann.weight_bits, qann.bias_bits
    return snn.use_backend(backend)
