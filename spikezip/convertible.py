"""What converts exactly: the rules a QANN's graph must follow to become an SNN.

Between two neuron layers only affine operations may sit (conv, linear, batch-norm with
running statistics, average-pool, flatten, upsampling, concatenation, residual add,
scaling by a constant).
``to_qann`` checks them right after morphing, before any training, and ``to_snn``
applies them while converting: one set of rules, so a network ``to_qann`` accepts is one
``to_snn`` converts.
"""

from __future__ import annotations

from enum import Enum

from torch import fx, nn

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
        "split", "expand", "repeat", "unflatten", "interpolate",
    }
)  # fmt: skip
# Scaling by a Python number is linear; by another tensor it is not.
_SCALE_OPS = frozenset({"mul", "imul", "truediv", "itruediv", "div"})
_ADD_OPS = frozenset({"add", "iadd", "sub", "isub"})


class Kind(Enum):
    """What a called module becomes in the SNN."""

    NEURON = "neuron"  # the activation: a layer of spiking neurons
    AFFINE = "affine"  # conv / linear: stepped, bias released
    BATCHNORM = "batchnorm"  # a batch-norm no conv / linear absorbs: stepped, shift released
    DROPOUT = "dropout"  # the identity at inference
    KEEP = "keep"  # linear without a constant term: kept as it is


def module_kind(name: str, module: nn.Module, activation: type[nn.Module]) -> Kind:
    """What the module called at ``name`` becomes; ``activation`` is the module type that
    becomes a neuron (``QReLU`` for SpikeZIP).

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
    elif isinstance(module, _MAX_POOL):
        hint = "max-pool is not linear; to_qann morphs it to average-pool before QANN training"
    elif getattr(module, "spiking", False):
        hint = "this network is already spiking"
    else:
        hint = (
            f"only {activation.__name__}, conv, linear, batch-norm, average-pool, "
            "flatten, dropout and identity modules convert"
        )
    raise UnsupportedLayerError(
        f"{type(module).__name__} at '{name}' cannot be converted exactly: {hint}."
    )


def check_function(node: fx.Node) -> None:
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


def check_graph(gm: fx.GraphModule, activation: type[nn.Module]) -> dict[str, Kind]:
    """Check every node of a traced QANN against the rules; returns each called
    module's :class:`Kind` by name.

    Raises:
        UnsupportedLayerError: the first node that cannot be converted exactly, named.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(
            f"the network's forward takes {len(placeholders)} inputs; the SNN encodes exactly one"
        )
    for name, calls in shared_call_sites(gm, (activation,)).items():
        raise UnsupportedLayerError(
            f"{activation.__name__} '{name}' is called at {calls} places in forward(); each "
            "call site needs its own neuron state. Give every call its own activation module."
        )
    kinds: dict[str, Kind] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            kinds[node.target] = module_kind(node.target, gm.get_submodule(node.target), activation)
        elif node.op in ("call_function", "call_method"):
            check_function(node)
        elif node.op == "get_attr":
            raise UnsupportedLayerError(
                f"forward() reads the tensor attribute '{node.target}' directly (graph node "
                f"'{node.name}'); wrap parameters in conv / linear modules so their bias "
                "can be released."
            )
        elif node.op == "output" and not isinstance(node.args[0], fx.Node):
            raise UnsupportedLayerError("the network must return a single tensor")
    if Kind.NEURON not in kinds.values():
        raise UnsupportedLayerError(
            f"the network has no {activation.__name__}: convert the ANN with "
            "spikezip.quant.to_qann and train it before building its SNN"
        )
    return kinds
