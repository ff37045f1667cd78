"""SNN-friendly morphing (paper §3.1 step 1): ReLU -> Q-ReLU, max-pool -> average-pool.

:func:`morph` is the shared part (pooling, refusals, the conversion's rules); each method
chooses what its ReLUs become: SpikeZIP's Q-ReLU (:func:`to_qann`), QCFS's clip-floor-shift
activation, or nothing, for a rate-coded conversion of the ReLU network itself.

Networks as they are written in the wild hide activations from module swapping: one
``nn.ReLU`` called at several places (torchvision's ResNets), ``F.relu`` in a
``forward`` (DenseNet), functional max-pooling. A spiking neuron keeps state per call
site, so :func:`morph` first rewrites the traced graph (``torch.fx``) so that every call
site has a module of its own, then swaps modules. The rewritten network is an
``fx.GraphModule`` whose parameters and buffers keep the original's names, so the
original's ``state_dict`` (torchvision's pretrained weights) loads into it. Every rewrite
is reported (:class:`Rewrite`, logged, and kept in the result's ``morph_report``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, fx, nn

from spikezip.convertible import check_graph
from spikezip.quant.placement import Quantizer, explicit_attention, place_quantizers
from spikezip.quant.qrelu import QReLU, check_levels
from spikezip.tracing import UnsupportedLayerError, describe, hidden_nonlinearities, op_name, trace

log = logging.getLogger(__name__)

# Activations with no spiking counterpart: only a ReLU (quantized or not, clipped or not)
# becomes a neuron, so these are refused rather than approximated.
_UNSUPPORTED_ACTIVATIONS = (
    nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Hardswish, nn.Sigmoid, nn.Tanh, nn.ELU, nn.SELU,
    nn.CELU, nn.Mish, nn.PReLU, nn.Hardtanh, nn.Softplus, nn.Hardsigmoid,
    nn.RReLU, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.GLU,
)  # fmt: skip

_AVG_POOL = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}
_ADAPTIVE_AVG_POOL = {
    nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d,
}

# What an activation becomes: ``activation(clip)``, clip None for a ReLU, t for a ReLU
# clipped at t (ReLU6, Hardtanh(0, t)); None keeps the ReLUs (and refuses clipped ones).
Activation = Callable[[float | None], nn.Module]


@dataclass(frozen=True)
class Rewrite:
    """One change :func:`morph` made: where, and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def clip_of(module: nn.Module) -> float | None:
    """``t`` if ``module`` is a ReLU clipped at ``t`` (``ReLU6``, ``Hardtanh(0, t)``)."""
    if isinstance(module, nn.ReLU6):
        return 6.0
    if type(module) is nn.Hardtanh and module.min_val == 0 and module.max_val > 0:
        return float(module.max_val)
    return None


# --------------------------------------------------------------- graph rewriting ----

_STATEFUL = (nn.ReLU, nn.ReLU6, nn.Hardtanh)  # what becomes a neuron: one per call site
_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def _arguments(node: fx.Node, names: tuple[str, ...]) -> dict:
    """A functional call's arguments after its input, by name (positional or keyword)."""
    values = dict(zip(names, node.args[1:], strict=False))
    values.update({k: v for k, v in node.kwargs.items() if k in names})
    return values


def _module_for(node: fx.Node) -> nn.Module | None:
    """The module doing what a functional call does, or None if it is not one we make."""
    name = op_name(node).removesuffix("_")
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "hardtanh":
        bounds = _arguments(node, ("min_val", "max_val"))
        return nn.Hardtanh(bounds.get("min_val", -1.0), bounds.get("max_val", 1.0))
    for dims in (1, 2, 3):
        if name == f"max_pool{dims}d":
            args = _arguments(node, _POOL_ARGS)
            if args.get("stride") is None:
                args.pop("stride", None)  # the functional default: stride = kernel size
            return getattr(nn, f"MaxPool{dims}d")(**args)
        if name == f"adaptive_max_pool{dims}d":
            args = _arguments(node, ("output_size", "return_indices"))
            return getattr(nn, f"AdaptiveMaxPool{dims}d")(**args)
    return None


def _inplace(node: fx.Node) -> bool:
    """``x.relu_()``, ``F.relu(x, inplace=True)`` or ``F.relu(x, True)``."""
    positional = op_name(node) in ("relu", "relu6") and node.args[1:2] == (True,)
    return op_name(node).endswith("_") or positional or bool(node.kwargs.get("inplace", False))


def _free_name(gm: fx.GraphModule, base: str) -> str:
    names = dict(gm.named_modules())
    if base not in names:
        return base
    k = 2
    while f"{base}_{k}" in names:
        k += 1
    return f"{base}_{k}"


def _give_each_call_its_module(gm: fx.GraphModule) -> list[Rewrite]:
    """Rewrite ``gm`` in place: a second, third ... call of an activation module gets a
    copy of its own; functional activations and max-pools become module calls."""
    rewrites: list[Rewrite] = []
    seen: dict[str, list[str]] = {}
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if not isinstance(module, _STATEFUL):
                continue
            sites = seen.setdefault(node.target, [])
            if sites:  # the first call keeps the module and its name
                name = _free_name(gm, f"{node.target}_{len(sites) + 1}")
                gm.add_submodule(name, copy.deepcopy(module))
                node.target = name
            sites.append(node.target)
        elif node.op in ("call_function", "call_method"):
            module = _module_for(node)
            if module is None:
                continue
            name = _free_name(gm, node.name)
            what = f"{describe(node)} -> module {type(module).__name__}"
            gm.add_submodule(name, module)
            source = node.args[0]
            with gm.graph.inserting_before(node):
                call = gm.graph.call_module(name, (source,))
            node.replace_all_uses_with(call)
            if _inplace(node) and isinstance(source, fx.Node):
                # x.relu_() changed x itself: later readers of x read the activation
                later = _after(node)
                for user in list(source.users):
                    if user is not call and user in later:
                        user.replace_input_with(source, call)
            gm.graph.erase_node(node)
            rewrites.append(Rewrite(name, what))
    for target, sites in seen.items():
        if len(sites) > 1:
            more = ", ".join(f"'{s}'" for s in sites[1:])
            rewrites.append(
                Rewrite(target, f"called at {len(sites)} places: one module each ({more} added)")
            )
    gm.graph.lint()
    gm.recompile()
    return rewrites


def _after(node: fx.Node) -> set[fx.Node]:
    later, current = set(), node.next
    while current.op != "root":
        later.add(current)
        current = current.next
    return later


# --------------------------------------------------------------- module swapping ----


def _morph_module(
    name: str, module: nn.Module, activation: Activation | None, others: bool = False
):
    """The SNN-friendly replacement of one module, or None to keep it; ``others``: keep
    the activations that are not ReLUs (quantizers are placed before them)."""
    if type(module) is nn.ReLU:
        return activation(None) if activation is not None else None
    clip = clip_of(module)
    if clip is not None:
        if activation is None:
            raise UnsupportedLayerError(
                f"{type(module).__name__} at '{name}' clips at {clip:g}: a rate-coded ReLU "
                "conversion has no clip. Use method=spikezip or qcfs, whose activation "
                "learns one."
            )
        return activation(clip)
    if isinstance(module, _UNSUPPORTED_ACTIVATIONS) and not others:
        raise UnsupportedLayerError(
            f"{type(module).__name__} at '{name}' has no spiking equivalent: only ReLU "
            "(clipped or not) becomes a spiking neuron. Replace it with nn.ReLU and retrain "
            "the ANN."
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


def _refuse_hidden(gm: fx.GraphModule) -> None:
    """Refuse the non-linear functions the rewrite does not turn into modules."""
    hidden = hidden_nonlinearities(gm)
    if hidden:
        more = f" ({len(hidden) - 1} more after it)" if len(hidden) > 1 else ""
        raise UnsupportedLayerError(
            f"{describe(hidden[0])}{more} applies a non-linearity inside forward() that "
            "has no spiking equivalent (only ReLU, clipped or not, and max-pooling are "
            "morphed)."
        )


def morph(
    model: nn.Module,
    activation: Activation | None = None,
    activation_type: type[nn.Module] = nn.ReLU,
    quantizer: Quantizer | None = None,
    example: Tensor | None = None,
) -> nn.Module:
    """An SNN-friendly copy of ``model`` (the input is untouched): every ``nn.ReLU``
    becomes ``activation(None)`` (kept when ``activation`` is None), a ReLU clipped at
    ``t`` (``ReLU6``, ``Hardtanh(0, t)``) ``activation(t)``, ``MaxPool{1,2,3}d`` an
    ``AvgPool`` of the same kernel, stride and padding, adaptive max-pool an adaptive
    average-pool. An activation module called at several places gets one module per
    call, and functional ReLUs and max-pools become modules first (module docstring).

    The result is checked against the conversion's rules (:mod:`spikezip.convertible`),
    with ``activation_type`` as the module that becomes a neuron: a layer the converter
    would refuse (a ``LayerNorm``, a batch-norm without running statistics, a product of
    branches, ...) is refused here, before any training. The rewrites made are logged and
    kept as ``result.morph_report`` (a list of :class:`Rewrite`).

    ``quantizer`` (``quantizer(signed)`` -> a new quantizer module) goes beyond ReLU
    networks: attention is written out (``nn.MultiheadAttention``,
    ``F.scaled_dot_product_attention``), other activations (GELU, SiLU, ...), LayerNorm,
    softmax and products are kept, and quantizers are placed where
    :mod:`spikezip.quant.placement` says; the result then converts with accumulating
    operators and graded spikes. Without it only ReLU networks pass.

    The graph is traced in eval mode (a stochastic depth or functional dropout then
    traces as the identity it is at inference). With an ``example`` input (a batch of the
    data's shape) it is traced with shapes (:class:`spikezip.tracing.ShapeTracer`): Python
    control flow on sizes and library helpers hidden from fx (torchvision's Swin) are
    traced into, and the result is specialised to that input size. Without one, a model
    that carries an ``example_input`` attribute (:func:`spikezip.models.build_model` sets
    it where the graph depends on the input size) is traced with that.

    Raises:
        UnsupportedLayerError: a layer or operation that cannot be converted, named by its
            path.
    """
    if example is None:
        example = getattr(model, "example_input", None)
    result = copy.deepcopy(model)
    training = result.training
    gm = trace(result.eval(), example)
    rewrites = _give_each_call_its_module(gm)
    if quantizer is not None:
        rewrites += [Rewrite(*done) for done in explicit_attention(gm)]
    if rewrites or example is not None:  # a graph module when the graph had to change
        result = gm
    if quantizer is None:
        _refuse_hidden(gm)
    for name, module in list(result.named_modules()):
        replacement = _morph_module(name, module, activation, others=quantizer is not None)
        if replacement is not None:
            result.set_submodule(name, replacement)
            clip = clip_of(module)
            if clip is not None:
                what = f"{type(module).__name__} -> {type(replacement).__name__} (clip now learned)"
                rewrites.append(Rewrite(name, what))
    if quantizer is not None:
        gm = trace(result)  # ExplicitAttention is traced into now
        placed = place_quantizers(gm, activation_type, quantizer)
        if placed:
            result = gm
        rewrites += [Rewrite(*done) for done in placed]
        check_graph(trace(result), activation_type, no_accumulating=None)
    else:
        check_graph(trace(result), activation_type)
    for rewrite in rewrites:
        log.info("morph: %s", rewrite)
    result.train(training)
    result.morph_report = rewrites
    return result


def to_qann(
    model: nn.Module, levels: int, scale: float | None = None, example: Tensor | None = None
) -> nn.Module:
    """A morphed copy of ``model`` (see :func:`morph`), ready for QANN training:
    ``nn.ReLU`` -> :class:`QReLU` with ``levels`` levels (and initial ``scale``, else LSQ's
    data init on the first training batch). A ReLU clipped at ``t`` becomes a Q-ReLU
    that starts clipping there (``scale = t / levels``, unless ``scale`` is given).
    Quantizers go where :mod:`spikezip.quant.placement` says for what is not a ReLU
    network; ``example``: trace with shapes (see :func:`morph`).

    Raises:
        UnsupportedLayerError: a layer or operation that cannot be made exact, named by its
            path.
    """
    levels = check_levels(levels)

    def activation(clip: float | None) -> QReLU:
        if scale is None and clip is not None:
            return QReLU(levels, clip / levels)
        return QReLU(levels, scale)

    return morph(
        model,
        activation,
        QReLU,
        quantizer=lambda signed: QReLU(levels, scale, signed),
        example=example,
    )
