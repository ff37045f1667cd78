"""What converts exactly: the rules a QANN's graph must follow to become an SNN.

Every node of the traced graph is one of these (:class:`Kind`, and its
:attr:`Kind.operator`, the kind the conversion report names):

- **spiking**: the activation that becomes a neuron layer (``QReLU`` for SpikeZIP), and
  an elementwise non-linearity (GELU, SiLU, hardswish, sigmoid, ...) applied to one
  neuron layer's output alone: that neuron's spikes then carry ``f``'s change (graded).
- **linear**: conv, linear, batch-norm with running statistics, average-pool, flatten,
  reshapes, upsampling, concatenation, residual add, scaling by a constant or by a
  parameter; a constant *added* to activations (a positional embedding, a class token,
  a number) is released over time like a bias.
- **accumulating**: an operator over activations that cannot be spike-driven (LayerNorm,
  softmax, the product of two activations, max-pooling, an elementwise non-linearity of
  anything but one neuron layer): it runs on the accumulated input and emits the change
  of its output (:class:`spikezip.snn.operators.Accumulating`). Exact only when the
  input is released once (encodings ``even`` and ``once``).
- **static**: what depends on no activation (parameters, shapes, arithmetic on sizes):
  the same value on every step.

What has no exact form (indices: sort, top-k, argmax; randomness; data-dependent control
flow) is refused by name. ``to_qann`` checks the rules right after morphing, before any
training, and ``to_snn`` applies them while converting: one set of rules, so a network
``to_qann`` accepts is one ``to_snn`` converts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import Enum

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from spikezip.tracing import UnsupportedLayerError, describe, op_name, shared_call_sites

# Every batch-norm: also SyncBatchNorm and what Lightning turns it back into after a
# distributed fit (in eval mode all of them are the same affine map).
BATCHNORM = (nn.modules.batchnorm._BatchNorm,)
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Linear maps with no bias: they commute with summing over time-steps as they are.
_LINEAR_KEEP = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity,
    # Every interpolation mode (nearest, bilinear, ...) is a fixed linear map of its input.
    nn.Upsample,
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
        "split", "expand", "repeat", "unflatten", "interpolate", "unbind", "roll", "narrow",
        "select", "movedim", "moveaxis", "swapaxes", "swapdims", "flip", "t", "tile",
        "view_as", "reshape_as", "expand_as", "tensor_split", "split_with_sizes",
        "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "diagonal", "index_select",
    }
)  # fmt: skip
# Scaling by a Python number is linear; by another tensor it is not.
_SCALE_OPS = frozenset({"mul", "imul", "truediv", "itruediv", "div"})
_ADD_OPS = frozenset({"add", "iadd", "sub", "isub"})


# Elementwise non-linearities: graded spikes after a neuron layer, accumulating elsewhere.
_ELEMENTWISE_MODULES = (
    nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.ReLU6, nn.ELU,
    nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.LeakyReLU, nn.Hardtanh, nn.PReLU,
    nn.Softsign, nn.LogSigmoid, nn.Tanhshrink,
)  # fmt: skip
_ELEMENTWISE_OPS = frozenset(
    {
        "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "relu6", "elu",
        "selu", "celu", "mish", "softplus", "leaky_relu", "hardtanh", "softsign",
        "logsigmoid", "tanhshrink", "erf", "exp", "clamp", "clip", "clamp_min",
        "clamp_max", "abs", "square", "sqrt", "rsqrt", "reciprocal", "pow", "log",
    }
)  # fmt: skip
# Modules over several values that become accumulating operators.
_ACCUMULATING_MODULES = (
    nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.Softmax, nn.LogSoftmax,
    nn.Softmax2d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, *_MAX_POOL,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())  # fmt: skip
# Functions over several values (or of two activations) that become accumulating.
_ACCUMULATING_OPS = frozenset(
    {
        "softmax", "log_softmax", "layer_norm", "group_norm", "rms_norm", "normalize",
        "instance_norm", "matmul", "bmm", "einsum", "baddbmm", "scaled_dot_product_attention",
        "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d",
        "adaptive_max_pool2d", "adaptive_max_pool3d", "maximum", "minimum", "amax", "amin",
        "var", "std", "norm", "logsumexp", "cumsum", "mul", "imul", "truediv", "itruediv",
        "div", "where",
    }
)  # fmt: skip
# No exact form: the output is an index, or random.
_REFUSED_OPS = {
    **dict.fromkeys(
        ("sort", "argsort", "msort", "topk", "kthvalue", "argmax", "argmin", "unique",
         "nonzero", "searchsorted", "bucketize", "mode", "median"),
        "its output is an index or an order, which no sum of spikes represents",
    ),
    **dict.fromkeys(
        ("rand", "rand_like", "randn", "randn_like", "randint", "bernoulli", "multinomial",
         "normal", "randperm"),
        "it is random, so the SNN's steps would not sum to one QANN forward",
    ),
}  # fmt: skip
# Tensor methods and attributes that read only the shape: static even on an activation.
_METADATA = frozenset(
    {
        "size", "dim", "numel", "shape", "dtype", "device", "ndim",
        # new tensors that take only the shape, dtype or device of an activation
        "new_zeros", "new_ones", "new_full", "new_empty", "zeros_like", "ones_like",
        "empty_like", "full_like",
    }
)  # fmt: skip
# Dropout-like functions (identity at inference) -> the position of their training flag.
_DROPOUT_OPS = {
    "dropout": 2, "dropout1d": 2, "dropout2d": 2, "dropout3d": 2, "alpha_dropout": 2,
    "feature_alpha_dropout": 2, "stochastic_depth": 3,  # torchvision.ops.stochastic_depth
}  # fmt: skip
_WEIGHTED_OPS = frozenset({"linear", "conv1d", "conv2d", "conv3d"})
_CONCAT_OPS = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack"})


class Kind(Enum):
    """What one node of a QANN's graph becomes in the SNN."""

    NEURON = "neuron"  # the activation: a layer of spiking neurons
    GRADED = "graded"  # an elementwise f of one neuron layer: folded into its spikes
    AFFINE = "affine"  # conv / linear: stepped, bias released
    BATCHNORM = "batchnorm"  # a batch-norm no conv / linear absorbs: stepped, shift released
    DROPOUT = "dropout"  # the identity at inference
    KEEP = "keep"  # a linear module without a constant term: kept as it is
    LINEAR = "linear"  # a linear function of activations: kept as it is
    RELEASE = "release"  # adds a constant: the constant is released like a bias
    ACCUMULATE = "accumulate"  # runs on the accumulated input, emits its output's change
    STATIC = "static"  # depends on no activation

    @property
    def operator(self) -> str:
        """The report's operator kind: spiking, linear, accumulating or static."""
        if self in (Kind.NEURON, Kind.GRADED):
            return "spiking"
        if self is Kind.ACCUMULATE:
            return "accumulating"
        if self is Kind.STATIC:
            return "static"
        return "linear"


@dataclass
class Plan:
    """The conversion of one traced graph: each node's :class:`Kind` by node name, the
    called modules' by module name, and which nodes carry activations (``streams``)."""

    nodes: dict[str, Kind] = field(default_factory=dict)
    modules: dict[str, Kind] = field(default_factory=dict)
    streams: set[str] = field(default_factory=set)

    def operators(self, gm: fx.GraphModule) -> dict[str, str]:
        """Report name (the module's path, else the graph node's name) -> operator kind,
        for every node that computes on activations."""
        out = {}
        for node in gm.graph.nodes:
            kind = self.nodes.get(node.name)
            if kind is None or kind is Kind.STATIC:
                continue
            out[str(node.target) if node.op == "call_module" else node.name] = kind.operator
        return out


def _accumulable(module: nn.Module) -> bool:
    return isinstance(module, (*_ELEMENTWISE_MODULES, *_ACCUMULATING_MODULES))


def module_kind(
    name: str, module: nn.Module, activation: type[nn.Module], no_accumulating: str | None = None
) -> Kind:
    """What the module called at ``name`` on activations becomes; ``activation`` is the
    module type that becomes a neuron (``QReLU`` for SpikeZIP). ``no_accumulating``: why
    this conversion carries no accumulating operators (None: it does).

    Raises:
        UnsupportedLayerError: the module has no exact spiking counterpart, named.
    """
    if isinstance(module, activation):
        return Kind.NEURON
    if isinstance(module, WEIGHTED):
        return Kind.AFFINE
    if isinstance(module, BATCHNORM):
        if module.running_mean is None:
            raise UnsupportedLayerError(
                f"{type(module).__name__} at '{name}' has track_running_stats=False, so it "
                "normalises with each batch's statistics and is not a fixed affine map."
            )
        return Kind.BATCHNORM
    if isinstance(module, _DROPOUT):
        return Kind.DROPOUT
    if isinstance(module, _LINEAR_KEEP):
        return Kind.KEEP
    if type(module) is nn.ReLU:
        hint = "run spikezip.quant.to_qann first, then train the QANN"
    elif _accumulable(module) and no_accumulating is None:
        return Kind.ACCUMULATE
    elif isinstance(module, _MAX_POOL):
        hint = "max-pool is not linear; to_qann morphs it to average-pool before QANN training"
    elif _accumulable(module):
        hint = f"it would be an accumulating operator, and {no_accumulating}"
    elif isinstance(module, nn.MultiheadAttention):
        hint = (
            "its fused computation hides the products and the softmax; write attention as "
            "explicit operations (linear layers, matmul, softmax)"
        )
    elif getattr(module, "spiking", False):
        hint = "this network is already spiking"
    else:
        hint = (
            f"only {activation.__name__}, conv, linear, batch-norm, average-pool, "
            "flatten, dropout and identity modules convert"
        )
        if no_accumulating is None:
            hint += ", and the accumulating operators (LayerNorm, softmax, GELU, ...)"
    raise UnsupportedLayerError(
        f"{type(module).__name__} at '{name}' cannot be converted exactly: {hint}."
    )


def _operands(node: fx.Node) -> list:
    """A call's operands, flattened (the tensors of a list in ``torch.cat`` included);
    ``alpha`` (torch.add's multiplier) is a constant, not an operand."""
    flat: list = []

    def visit(value):
        if isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        else:
            flat.append(value)

    visit(list(node.args))
    visit([v for k, v in node.kwargs.items() if k != "alpha"])
    return flat


def function_kind(node: fx.Node, streams: set[str], no_accumulating: str | None = None) -> Kind:
    """What a function or tensor-method call on activations becomes (``streams``: the
    names of the nodes that carry activations).

    Raises:
        UnsupportedLayerError: the call has no exact spiking counterpart, named.
    """
    name = op_name(node)
    operands = _operands(node)
    active = [a for a in operands if isinstance(a, fx.Node) and a.name in streams]
    constant = [a for a in operands if not (isinstance(a, fx.Node) and a.name in streams)]
    constant = [a for a in constant if a is not None]
    if name in _REFUSED_OPS:
        raise UnsupportedLayerError(
            f"{describe(node)} cannot be converted exactly: {_REFUSED_OPS[name]}."
        )
    if name in _DROPOUT_OPS:
        at = _DROPOUT_OPS[name]
        if node.kwargs.get("training", node.args[at] if len(node.args) > at else False):
            raise UnsupportedLayerError(f"{describe(node)} drops at random (training=True).")
        return Kind.DROPOUT
    if name in _ADD_OPS or name in _CONCAT_OPS:
        if name in _ADD_OPS and constant and no_accumulating is not None:
            raise UnsupportedLayerError(
                f"{describe(node)} adds a constant: a bias outside a conv/linear layer, which "
                "the converter cannot release over time. Fold it into a layer's bias."
            )
        return Kind.RELEASE if constant and name in _ADD_OPS else _concat_kind(node, streams)
    if name in _LINEAR_OPS:
        return Kind.LINEAR
    if name in _WEIGHTED_OPS and active == [node.args[0]] and no_accumulating is None:
        return Kind.AFFINE  # F.linear / F.conv2d with a parameter as weight: bias released
    if name == "pad":  # zero padding is linear; another value is an added constant
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        if mode != "constant" or not value:
            return Kind.LINEAR
    if name in ("mul", "imul", "truediv", "itruediv", "div", "matmul") and len(active) == 1:
        divides = name in ("truediv", "itruediv", "div")
        if divides and node.args[0] is not active[0]:
            refuse = "divides by an activation"
        elif no_accumulating is not None and any(isinstance(c, fx.Node) for c in constant):
            refuse = "scales by a tensor"  # the rule of a conversion without constants
        else:
            return Kind.LINEAR  # by a number or a parameter: linear in the activation
        if no_accumulating is not None:
            raise UnsupportedLayerError(f"{describe(node)} {refuse}: not linear.")
        return Kind.ACCUMULATE
    if name == "relu" or name == "relu_":
        hint = (
            "a functional activation such as F.relu must be an nn.ReLU module so to_qann "
            "can morph it"
        )
    elif name in _ELEMENTWISE_OPS or name in _ACCUMULATING_OPS:
        if no_accumulating is None:
            return Kind.ACCUMULATE
        hint = f"it would be an accumulating operator, and {no_accumulating}"
    else:
        hint = (
            "between two neuron layers only linear operations (conv, linear, batch-norm, "
            "average-pool, flatten, residual add, scaling by a constant) and the known "
            "accumulating operators (LayerNorm, softmax, products, GELU, ...) are allowed; a "
            "library helper hidden from torch.fx (torch.fx.wrap) is traced into when to_qann "
            "is given an example input (to_qann(model, levels, example=x))"
        )
    raise UnsupportedLayerError(f"{describe(node)} cannot be converted exactly: {hint}.")


def _concat_kind(node: fx.Node, streams: set[str]) -> Kind:
    """A concatenation of activations is linear; with constant parts (a class token) they
    are released like a bias."""
    parts = _operands(node)
    tensors = [a for a in parts if isinstance(a, fx.Node)]
    if all(a.name in streams for a in tensors):
        return Kind.LINEAR
    return Kind.RELEASE


def graded_source(node: fx.Node, plan: Plan, gm: fx.GraphModule) -> fx.Node | None:
    """The neuron node whose spikes can carry ``node``'s elementwise non-linearity: its
    only activation operand, when that is a neuron layer no other node reads and the
    non-linearity's other arguments are numbers; None otherwise."""
    if node.op == "call_module":
        if not isinstance(gm.get_submodule(node.target), _ELEMENTWISE_MODULES):
            return None
    elif op_name(node) not in _ELEMENTWISE_OPS:
        return None
    source = node.args[0] if node.args else None
    if not isinstance(source, fx.Node) or plan.nodes.get(source.name) is not Kind.NEURON:
        return None
    others = [*node.args[1:], *node.kwargs.values()]
    if len(source.users) != 1 or any(isinstance(a, fx.Node) for a in others):
        return None
    return source


def check_graph(
    gm: fx.GraphModule,
    activation: type[nn.Module],
    no_accumulating: str | None = "this conversion carries none",
) -> Plan:
    """Check every node of a traced QANN against the rules; returns the :class:`Plan`.

    ``no_accumulating``: why the conversion carries no accumulating operators (they are
    refused, with this reason); None allows them, and folds elementwise non-linearities
    of a neuron layer into its spikes (:attr:`Kind.GRADED`).

    Raises:
        UnsupportedLayerError: the first node that cannot be converted exactly, named.
    """
    plan = classify(gm, activation, no_accumulating)
    if Kind.NEURON not in plan.nodes.values():
        raise UnsupportedLayerError(
            f"the network has no {activation.__name__}: convert the ANN with "
            "spikezip.quant.to_qann and train it before building its SNN"
        )
    return plan


def classify(
    gm: fx.GraphModule,
    activation: type[nn.Module],
    no_accumulating: str | None = "this conversion carries none",
) -> Plan:
    """:func:`check_graph` without requiring a neuron layer: what to_qann reads before it
    places its quantizers."""
    # Optional arguments traced at their defaults (tracing.trace) stay placeholders that
    # nothing reads; the input is the first.
    placeholders = [
        n for i, n in enumerate(p for p in gm.graph.nodes if p.op == "placeholder")
        if i == 0 or n.users
    ]  # fmt: skip
    if len(placeholders) != 1:
        raise UnsupportedLayerError(
            f"the network's forward takes {len(placeholders)} inputs; the SNN encodes exactly one"
        )
    for name, calls in shared_call_sites(gm, (activation,)).items():
        raise UnsupportedLayerError(
            f"{activation.__name__} '{name}' is called at {calls} places in forward(); each "
            "call site needs its own neuron state. Give every call its own activation module."
        )
    plan = Plan()
    for node in gm.graph.nodes:
        inputs = [a for a in node.all_input_nodes if a.name in plan.streams]
        if node.op == "placeholder":
            if node is placeholders[0]:
                plan.streams.add(node.name)
            continue
        if node.op == "output":
            _check_output(node, plan)
            continue
        metadata = node.op in ("call_method", "call_function") and op_name(node) in _METADATA
        metadata |= op_name(node) == "getattr" and node.args[1:2] in (("shape",), ("ndim",))
        if not inputs or metadata:
            if node.op == "get_attr" and no_accumulating is not None:
                raise UnsupportedLayerError(
                    f"forward() reads the tensor attribute '{node.target}' directly (graph "
                    f"node '{node.name}'); wrap parameters in conv / linear modules so their "
                    "bias can be released."
                )
            plan.nodes[node.name] = Kind.STATIC
            continue
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            kind = module_kind(node.target, module, activation, no_accumulating)
            if len(inputs) > 1 and kind is not Kind.ACCUMULATE:
                raise UnsupportedLayerError(
                    f"{type(module).__name__} at '{node.target}' takes {len(inputs)} activations"
                )
        else:
            kind = function_kind(node, plan.streams, no_accumulating)
        if kind is Kind.ACCUMULATE and no_accumulating is None and graded_source(node, plan, gm):
            kind = Kind.GRADED
        plan.nodes[node.name] = kind
        plan.streams.add(node.name)
        if node.op == "call_module":
            plan.modules[node.target] = kind
    return plan


def _check_output(node: fx.Node, plan: Plan) -> None:
    """The network returns activations: one tensor, or a tuple / list / dict of them."""
    leaves = []

    def visit(value):
        if isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        else:
            leaves.append(value)

    visit(node.args[0])
    for leaf in leaves:
        if not isinstance(leaf, fx.Node) or leaf.name not in plan.streams:
            raise UnsupportedLayerError(
                f"the network returns {leaf!r}, which depends on no input: every output "
                "must be a tensor computed from the input (one, or a tuple, list or dict)"
            )


def _called(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def fuse_batchnorm(gm: fx.GraphModule) -> None:
    """Fold each eval batch-norm of a traced network into the conv / linear that alone
    feeds it, in place (what to_snn and the integer QANN start from)."""
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        bn = _called(gm, node)
        if not isinstance(bn, BATCHNORM) or bn.running_mean is None:
            continue
        prev = node.args[0]
        layer = _called(gm, prev) if isinstance(prev, fx.Node) else None
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
