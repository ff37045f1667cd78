"""Graph capture with torch.fx, shared by QANN morphing and SNN conversion.

A module-swapping converter only sees ``named_modules()``; an ``F.relu`` inside a
``forward`` or one ``nn.ReLU`` called at two places is invisible to it and silently
breaks the converted network. Tracing the graph sees both.
"""

from __future__ import annotations

import inspect
import operator
import re
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor, fx, nn

from spikezip.errors import SpikeZIPError


class UnsupportedLayerError(SpikeZIPError, ValueError):
    """A layer or operation that cannot be made exact; the message names it and says why."""


def _record_setitem(proxy: fx.Proxy, key, value) -> None:
    """Item assignment (``mask[a:b] = k``, as Swin builds its shifted-window mask) as a
    node of the graph."""
    proxy.tracer.create_proxy("call_function", operator.setitem, (proxy, key, value), {})


class _Proxy(fx.Proxy):
    def __setitem__(self, key, value) -> None:
        _record_setitem(self, key, value)


class SpikeZIPTracer(fx.Tracer):
    """fx tracer that keeps SpikeZIP's own modules (Q-ReLU, neurons, spiking layers) as leaves."""

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True  # an error names the source line of a node

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # Every batch-norm is one node, also a subclass defined outside torch.nn (the
        # _BatchNormXd Lightning leaves after a synchronised-batch-norm fit).
        return (
            getattr(type(m), "spikezip_leaf", False)
            or isinstance(m, nn.modules.batchnorm._BatchNorm)
            or super().is_leaf_module(m, module_qualified_name)
        )


class _ValueProxy(fx.Proxy):
    """A proxy whose value :class:`ShapeTracer` knows: it has a length."""

    def __len__(self) -> int:
        return len(self.tracer.values[self.node])

    def __setitem__(self, key, value) -> None:
        _record_setitem(self, key, value)


class ShapeTracer(SpikeZIPTracer):
    """fx tracing with one example input: every node's value is computed as the node is
    recorded, so Python control flow on shapes (``if H % window:``) takes the example's
    branch, and the helpers a model library hides from fx with ``torch.fx.wrap``
    (torchvision's Swin attention and patch merging) are traced into. The graph is
    specialised to the example's shape: the network then converts for that input size."""

    # Modules whose fx.wrap'ed functions are traced into (their control flow is on shapes).
    UNWRAP = ("torchvision.models.",)

    def __init__(self, example: Tensor):
        super().__init__()
        self.example = example
        self.values: dict[fx.Node, object] = {}
        self._placeholders = 0
        self._evaluating = False

    def _value(self, a):
        return self.values[a.node] if isinstance(a, fx.Proxy) else a

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):  # fmt: skip
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        args, kwargs = fx.node.map_aggregate((args, kwargs), self._value)
        self._evaluating, was = True, self._evaluating
        try:
            value = self._evaluate(kind, target, args, kwargs)
        finally:
            self._evaluating = was
        self.values[proxy.node] = value
        return proxy

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._evaluating:  # computing a value: a module reads its own parameters
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def _evaluate(self, kind, target, args, kwargs):
        with torch.no_grad():
            if kind == "placeholder":
                self._placeholders += 1
                value = self.example if self._placeholders == 1 else (args[0] if args else None)
            elif kind == "get_attr":
                # Read past Module.__getattr__, which the tracer has patched too.
                owner, _, attr = str(target).rpartition(".")
                module = self.root.get_submodule(owner)
                for store in (module._parameters, module._buffers, module.__dict__):
                    if attr in store:
                        value = store[attr]
                        break
                else:
                    value = getattr(module, attr)
            elif kind == "call_module":
                # forward, not __call__: the tracer has patched Module.__call__
                value = self.root.get_submodule(target).forward(*args, **kwargs)
            elif kind == "call_method":
                value = getattr(args[0], target)(*args[1:], **kwargs)
            elif kind == "call_function":
                value = target(*args, **kwargs)
            else:
                value = None
        return value

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ValueProxy(node, self)

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self.values[obj.node])

    def iter(self, obj: fx.Proxy):
        return iter([obj[i] for i in range(len(self.values[obj.node]))])

    def trace(self, root, concrete_args=None):
        from torch.fx import _symbolic_trace as symbolic

        hidden = {
            key: frame
            for key, frame in symbolic._wrapped_fns_to_patch.items()
            if str(frame.get("__name__", "")).startswith(self.UNWRAP)
        }
        for key in hidden:
            del symbolic._wrapped_fns_to_patch[key]
        try:
            return super().trace(root, concrete_args)
        finally:
            symbolic._wrapped_fns_to_patch.update(hidden)


def _defaults_after_the_input(model: nn.Module) -> dict | None:
    """``forward``'s optional arguments after the input (a mask, a flag) at their
    defaults: the SNN takes one input, and a default of None must not become a second
    graph input."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    defaults = {
        p.name: p.default
        for p in params
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return defaults or None


def trace(model: nn.Module, example: Tensor | None = None) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule whose submodules keep the model's names; with
    an ``example`` input, by :class:`ShapeTracer` (the graph specialised to its shape).

    Raises:
        UnsupportedLayerError: if torch.fx cannot trace the model (data-dependent control flow).
    """
    tracer = SpikeZIPTracer() if example is None else ShapeTracer(example)
    try:
        graph = tracer.trace(model, concrete_args=_defaults_after_the_input(model))
    except Exception as err:  # fx raises many types; the cause is kept below
        raise UnsupportedLayerError(
            f"torch.fx could not trace {type(model).__name__}{_where(err)}: {err}. SpikeZIP "
            "needs the whole "
            "computation graph to prove the conversion exact; remove data-dependent control "
            "flow from forward()."
        ) from err
    _drop_specialised_arguments(graph)
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def _where(err: BaseException) -> str:
    """`` at FILE:LINE in FUNCTION``: the innermost frame of ``err``'s traceback outside
    torch and this package (the model's line fx stopped at), or ``""``."""
    import traceback

    inside = (str(Path(torch.__file__).parent), str(Path(__file__).parent))
    frames = [
        f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(inside)
    ]
    if not frames:
        return ""
    f = frames[-1]
    line = f" ({f.line.strip()})" if f.line else ""
    return f" at {f.filename}:{f.lineno} in {f.name}{line}"


def _drop_specialised_arguments(graph: fx.Graph) -> None:
    """Remove the placeholders fx keeps for the arguments traced at their defaults, with
    the checks it adds on them (``_assert_is_none``, ``x == default``), when nothing else
    reads them: the traced forward then takes the input alone."""
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    for node in inputs[1:]:
        seen, order, stack = set(), [], [node]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            order.append(current)
            stack.extend(current.users)
        sinks = [n for n in order if not n.users]
        checks = ("_assert", "_assert_is_none")
        if all(n.op == "call_function" and op_name(n) in checks for n in sinks):
            for dead in sorted(order, key=_position(graph), reverse=True):
                graph.erase_node(dead)


def _position(graph: fx.Graph):
    index = {n: i for i, n in enumerate(graph.nodes)}
    return index.__getitem__


# Names of functions / tensor methods that apply a non-linearity. Inside a forward() they
# hide from a module-swapping morph; to_qann refuses them with the node's location.
NONLINEAR_OPS = frozenset(
    {
        "relu", "relu_", "relu6", "gelu", "silu", "leaky_relu", "leaky_relu_", "hardswish",
        "elu", "selu", "celu", "mish", "sigmoid", "tanh", "softplus", "hardtanh", "prelu",
        "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clip", "clip_",
        "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
        "adaptive_max_pool3d", "maximum", "minimum", "softmax", "log_softmax",
    }
)  # fmt: skip


def op_name(node: fx.Node) -> str:
    """The bare name of the function or method a node calls (``relu`` for ``F.relu``)."""
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


_TORCH = str(Path(torch.__file__).parent)


def _user_frame(stack: str | None) -> str | None:
    """The innermost frame of a node's stack trace outside torch: ``file:line (code)``."""
    if not stack:
        return None
    lines = stack.strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = re.match(r'\s*File "(.+)", line (\d+), in (\S+)', lines[i])
        if match and not match.group(1).startswith(_TORCH):
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            where = f"{match.group(1)}:{match.group(2)}"
            return f"{where} ({code})" if code and not code.startswith("File ") else where
    return None


def describe(node: fx.Node) -> str:
    """Where a node comes from, for error messages: its op, and the source line if known."""
    where = _user_frame(node.meta.get("stack_trace"))
    kind = {"call_function": "function", "call_method": "tensor method"}.get(node.op, node.op)
    text = f"{kind} '{op_name(node)}' (graph node '{node.name}')"
    return f"{text} at {where}" if where else text


def shared_call_sites(gm: fx.GraphModule, types: tuple[type, ...]) -> dict[str, int]:
    """Submodules of the given types that the graph calls more than once: name -> calls."""
    calls = Counter(
        node.target
        for node in gm.graph.nodes
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), types)
    )
    return {name: n for name, n in calls.items() if n > 1}


def hidden_nonlinearities(gm: fx.GraphModule) -> list[fx.Node]:
    """Nodes that apply a non-linearity through a function or tensor method, not a module."""
    return [
        node
        for node in gm.graph.nodes
        if node.op in ("call_function", "call_method") and op_name(node) in NONLINEAR_OPS
    ]


__all__ = [
    "SpikeZIPTracer",
    "UnsupportedLayerError",
    "describe",
    "hidden_nonlinearities",
    "shared_call_sites",
    "trace",
]


def node_shapes(gm: fx.GraphModule, x: Tensor) -> dict[str, tuple[int, ...]]:
    """Each node's output shape for one sample (batch dimension dropped), from running
    ``gm`` on ``x`` without gradients."""
    shapes: dict[str, tuple[int, ...]] = {}

    class Shapes(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, Tensor):
                shapes[n.name] = tuple(out.shape[1:])
            return out

    with torch.no_grad():
        Shapes(gm).run(x)
    return shapes
