"""Integer networks (``pet.weight_bits``): weights on an integer grid during PET, then a
QANN that computes in integers only, whose SNN reproduces it bit for bit.

The grid is chosen per output channel so that a neuron's threshold is a whole number of
weight units. Take a conv / linear layer whose input has the unit ``s_in`` (the step of
the Q-ReLU before it, divided by the window of an average pooling in between; for the
first layer one pixel step, the input normalisation folded into the weights) and whose
output feeds a Q-ReLU of step ``s_out`` through its batch-norm. Its weight in output
units per input level is ``v = W_fold * s_in`` (``W_fold``: batch-norm folded in, with
the major path's running statistics). The natural symmetric per-channel step of ``B``
bits is ``max|v_c| / (2^(B-1) - 1)``; the step used is the next coarser one that divides
``s_out``: ``u_c = s_out / m_c`` with the integer ``m_c = floor(s_out / natural step)``
(at least 1: where the natural step exceeds ``s_out``, the step is ``s_out`` itself and
weights beyond the grid's top clip, in training and in integers alike). Then the neuron
of channel ``c`` has the integer threshold ``m_c``, its inputs ``k = v / u_c`` are
integers of ``B`` bits, and its bias is an integer number of ``u_c``. The scale is fixed
by the weights' range, not learned (LSQ): a learned step would have to stay tied to the
activation steps through ``m_c``, and the floor that ties them has no useful gradient.
The layer without a Q-ReLU after it (the classifier) gets one step for all its channels,
so its outputs share a unit and their argmax is the float network's. Weights are trained
through the quantizer with a straight-through gradient.

:func:`integerize` then builds the integer QANN from the exported float QANN and the
thresholds recorded at export (:func:`integer_plan`): pixels as the integers they are,
integer weights, biases rounded to the unit (half up), ``IntQReLU`` levels
``clip(floor((z + floor(m / 2)) / m), low, n)``, sums instead of average pooling. It
computes in float64, whose integers are exact below ``2 ** 53`` (torch has no integer
convolution); a bound on every accumulator is checked when it is built, and each
quantizer's bound (``register_bound``) decides whether its SNN neurons keep their
membrane in int32 or int64.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from spikezip.convertible import fuse_batchnorm
from spikezip.quant.qrelu import QReLU
from spikezip.tracing import UnsupportedLayerError, describe, node_shapes, op_name, trace

INPUT = "<input>"
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCHNORM = nn.modules.batchnorm._BatchNorm
EXACT_BELOW = 2**53  # float64 holds every integer of smaller magnitude exactly
PASS_THROUGH = {"flatten", "view", "reshape", "contiguous"}


def bits_for(low: int, high: int) -> int:
    """Bits of a register holding every integer in ``[low, high]``: ``⌈log2(high + 1)⌉``
    unsigned when ``low >= 0`` (the tracer's ``⌈log2(S_max - S_min + 1)⌉`` for ``S_min =
    0``), else two's complement: ``⌈log2(high - low + 1)⌉``, one bit more where the range
    does not sit the way two's complement does. At least 1."""
    low, high = int(low), int(high)
    if high < low:
        raise ValueError(f"empty range [{low}, {high}]")
    if low >= 0:  # an unsigned register holds 0..2^b - 1
        return max(1, math.ceil(math.log2(high + 1)))
    bits = max(1, math.ceil(math.log2(high - low + 1)))
    while -(2 ** (bits - 1)) > low or 2 ** (bits - 1) - 1 < high:  # two's complement
        bits += 1
    return bits


def check_weight_bits(bits) -> int | None:
    """``pet.weight_bits``: None (float weights) or an int in 2..16."""
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"weight_bits must be an integer from 2 to 16 (or null), got {bits!r}")
    return bits


@dataclass(frozen=True)
class Pixels:
    """How a dataset turns integer pixels ``p`` in ``0..max`` into the network's input:
    ``x = (p / max - mean) / std`` per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    max: int = 255

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "max": self.max}

    @classmethod
    def of(cls, value) -> Pixels | None:
        if value is None or isinstance(value, Pixels):
            return value
        return cls(tuple(value["mean"]), tuple(value["std"]), int(value["max"]))

    def scale(self) -> Tensor:
        """``[C]`` what one pixel step adds to the normalised input."""
        return 1.0 / (self.max * torch.tensor(self.std, dtype=torch.float64))

    def offset(self) -> Tensor:
        """``[C]`` the normalised input of a pixel at 0."""
        return -torch.tensor(self.mean, dtype=torch.float64) / torch.tensor(
            self.std, dtype=torch.float64
        )


@dataclass(frozen=True)
class Link:
    """Where a conv / linear layer sits between quantizers: its input comes from the
    Q-ReLU ``source`` (or the network input, :data:`INPUT`) divided by ``divisor`` (the
    windows of average pooling on the way); its output goes through the batch-norm
    ``norm`` (or none) to the Q-ReLU ``target`` (None: to the network's output), added on
    the way (a residual block) to the outputs of the ``partners`` (other conv / linear
    layers, which then share its grid) and of the identity ``shortcuts``."""

    source: str
    divisor: float
    norm: str | None
    target: str | None
    partners: tuple[str, ...] = ()
    shortcuts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shortcut:
    """An identity shortcut (``nn.Identity`` module ``name``) from the Q-ReLU ``source``
    (through ``divisor``) into the add before the Q-ReLU ``target``, beside the conv /
    linear ``layers`` whose grid it takes."""

    source: str
    divisor: float
    target: str
    layers: tuple[str, ...]


ADDS = {"add", "iadd"}


def _module(gm: fx.GraphModule, node) -> nn.Module | None:
    if isinstance(node, fx.Node) and node.op == "call_module":
        return gm.get_submodule(node.target)
    return None


def _shapes(gm: fx.GraphModule, input_shape) -> dict[str, tuple[int, ...]]:
    """Each node's output shape for one sample (what an adaptive pooling divides by)."""
    param = next(gm.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    return node_shapes(gm, torch.zeros(1, *input_shape, dtype=dtype))


def _pool_divisor(module: nn.Module, node: fx.Node, what: str, shapes) -> float:
    if isinstance(module, nn.AvgPool2d):
        if module.ceil_mode:
            raise UnsupportedLayerError(
                f"{describe(node)} pools with ceil_mode=True: its edge windows are smaller, "
                f"so {what} has no single input unit"
            )
        if module.divisor_override is not None:
            return float(module.divisor_override)
        if module.padding not in (0, (0, 0)) and not module.count_include_pad:
            raise UnsupportedLayerError(
                f"{describe(node)} averages over windows of different sizes "
                f"(count_include_pad=False), so {what} has no single input unit"
            )
        k = module.kernel_size
        k = (k, k) if isinstance(k, int) else k
        return float(k[0] * k[1])
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size_in, size_out = shapes[node.args[0].name][-2:], shapes[node.name][-2:]
        if any(i % o for i, o in zip(size_in, size_out, strict=True)):
            raise UnsupportedLayerError(
                f"{describe(node)} pools {size_in} to {size_out}: windows of different "
                f"sizes, so {what} has no single input unit"
            )
        return float((size_in[0] // size_out[0]) * (size_in[1] // size_out[1]))
    raise UnsupportedLayerError(
        f"{describe(node)} ({type(module).__name__}) lies between {what} and the quantizer "
        "before it; integer weights (pet.weight_bits) support average pooling, flattening "
        "and dropout there"
    )


def _source(gm, node, quantizer, what: str, shapes) -> tuple[str, float]:
    """The quantizer (or the input) a value comes from, and the pooling divisor between."""
    divisor, prev = 1.0, node
    while True:
        m = _module(gm, prev)
        if isinstance(prev, fx.Node) and prev.op == "placeholder":
            return INPUT, divisor
        if isinstance(m, quantizer):
            return prev.target, divisor
        if isinstance(m, (nn.Dropout, nn.Identity, nn.Flatten)) or (
            isinstance(prev, fx.Node)
            and prev.op in ("call_function", "call_method")
            and op_name(prev) in PASS_THROUGH
        ):
            prev = prev.args[0]
            continue
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            divisor *= _pool_divisor(m, prev, what, shapes)
            prev = prev.args[0]
            continue
        where = describe(prev) if isinstance(prev, fx.Node) else repr(prev)
        raise UnsupportedLayerError(
            f"the input of {what} comes from {where}: integer weights (pet.weight_bits) "
            "need every conv / linear layer fed by one quantizer or the input, through "
            "average pooling, flattening or dropout only (an add after the neurons, as "
            "residual re-routing places it, sums two steps no integer grid shares)"
        )


def _after_norm(gm, node) -> tuple[str | None, fx.Node]:
    users = list(node.users)
    if len(users) == 1 and isinstance(_module(gm, users[0]), BATCHNORM):
        return users[0].target, users[0]
    return None, node


def _term(gm, node, quantizer) -> tuple[str, str]:
    """What one operand of a residual add is: ``("layer", conv name)`` (through its
    batch-norm) or ``("shortcut", identity module name)``."""
    m = _module(gm, node)
    if isinstance(m, BATCHNORM) and isinstance(_module(gm, node.args[0]), WEIGHTED):
        return "layer", node.args[0].target
    if isinstance(m, WEIGHTED):
        return "layer", node.target
    if isinstance(m, nn.Identity):
        return "shortcut", node.target
    raise UnsupportedLayerError(
        f"{describe(node)} is added into a residual sum: integer weights (pet.weight_bits) "
        "add conv / linear outputs and identity shortcut modules only"
    )


def links(
    gm: fx.GraphModule, quantizer: type[nn.Module], input_shape
) -> tuple[dict[str, Link], dict[str, Shortcut]]:
    """The :class:`Link` of every conv / linear layer of a traced QANN whose activations
    are ``quantizer`` modules, and the :class:`Shortcut` of every identity shortcut.

    Raises:
        UnsupportedLayerError: a layer the integer mode cannot place (an add after the
            neurons, a layer called twice, an operation between two layers), named.
    """
    shapes = _shapes(gm, input_shape)
    found, shortcuts = {}, {}
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in gm.graph.nodes:
        layer = _module(gm, node)
        if not isinstance(layer, WEIGHTED):
            continue
        what = f"'{node.target}'"
        if calls[node.target] > 1:
            raise UnsupportedLayerError(f"{what} is called more than once: its grid is ambiguous")
        source, divisor = _source(gm, node.args[0], quantizer, what, shapes)
        if source == INPUT and divisor != 1:
            raise UnsupportedLayerError(
                f"{what} reads the input through average pooling: integer weights "
                "(pet.weight_bits) take the pixels straight into the first layer"
            )
        norm, out = _after_norm(gm, node)
        users = list(out.users)
        target, partners, ids = None, (), ()
        if len(users) == 1 and users[0].op != "output" and op_name(users[0]) in ADDS:
            add = users[0]
            terms = [_term(gm, a, quantizer) for a in add.args[:2] if isinstance(a, fx.Node)]
            after = list(add.users)
            if (
                len(terms) != 2
                or len(after) != 1
                or not isinstance(_module(gm, after[0]), quantizer)
            ):
                raise UnsupportedLayerError(
                    f"{describe(add)}: integer weights (pet.weight_bits) need a residual add "
                    "of two operands straight into one quantizer"
                )
            target = after[0].target
            partners = tuple(n for k, n in terms if k == "layer" and n != node.target)
            ids = tuple(n for k, n in terms if k == "shortcut")
            for name in ids:
                shortcut = next(
                    n for n in gm.graph.nodes if n.op == "call_module" and n.target == name
                )
                s_source, s_div = _source(gm, shortcut.args[0], quantizer, f"'{name}'", shapes)
                layers = tuple(n for k, n in terms if k == "layer")
                shortcuts[name] = Shortcut(s_source, s_div, target, layers)
        elif len(users) == 1 and isinstance(_module(gm, users[0]), quantizer):
            target = users[0].target
        elif not all(u.op == "output" for u in users):
            where = ", ".join(describe(u) for u in users)
            raise UnsupportedLayerError(
                f"the output of {what} goes to {where}: integer weights (pet.weight_bits) "
                "need each layer to feed one quantizer (through its batch-norm and maybe a "
                "residual add) or the network's output"
            )
        found[node.target] = Link(source, divisor, norm, target, partners, ids)
    return found, shortcuts


def _bn_gain(bn: nn.Module | None, channels: int, like: Tensor) -> Tensor:
    if bn is None:
        return torch.ones(channels, dtype=like.dtype, device=like.device)
    gain = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    return (bn.weight * gain if bn.affine else gain).to(like)


def _per_out(t: Tensor, weight: Tensor) -> Tensor:
    return t.view(-1, *([1] * (weight.dim() - 1)))


def _per_in(t: Tensor, weight: Tensor) -> Tensor:
    """``[C_in]`` -> broadcast over a weight's input dimension (a linear layer after a
    flatten sees ``C_in * H * W`` inputs, channel-major)."""
    if weight.dim() > 2:
        return t.view(1, -1, *([1] * (weight.dim() - 2)))
    repeat = weight.shape[1] // len(t)
    return t.repeat_interleave(repeat).view(1, -1)


def grid(v: Tensor, bits: int, s_out: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``(u, m)``: the step of the integer grid of weights ``v`` (in output units per
    input level; ``[C_out, ...]``) per output channel, and the neuron thresholds
    ``m = s_out / u`` (integers); for an output layer (``s_out`` None) one step, no
    thresholds."""
    top = 2 ** (bits - 1) - 1
    if s_out is None:
        natural = v.abs().max().clamp_min(torch.finfo(v.dtype).tiny) / top
        return natural.expand(v.shape[0]).clone(), None
    natural = v.abs().flatten(1).amax(1).clamp_min(torch.finfo(v.dtype).tiny) / top
    m = torch.floor(s_out / natural).clamp_min(1)
    return s_out / m, m


class _OnGrid:
    """A conv / linear layer of a PET network whose weight trains on its integer grid
    (module docstring): the forward uses :meth:`grid_weight`, the weight on the grid with
    a straight-through gradient. The parameters keep their names (``weight``, ``bias``),
    so checkpoints look like float ones. Made by :func:`attach_weight_grids`."""

    bits: int
    link: Link
    _root: tuple  # (the PET network,): a deep copy of it follows the copy

    def grid_context(self):
        """``(batch-norm or None, s_in, per-input-channel pixel scale or None, s_out or
        None)`` from the live network (the major path's statistics and steps)."""
        (root,) = self._root
        link = self.link
        norm = None if link.norm is None else _norm_of(root.get_submodule(link.norm))
        if link.source == INPUT:
            s_in, scale = 1.0, self._pixel_scale
        else:
            s_in, scale = _step_of(root.get_submodule(link.source)) / link.divisor, None
        s_out = None if link.target is None else _step_of(root.get_submodule(link.target))
        return norm, s_in, scale, s_out

    def _gain(self) -> Tensor:
        weight = self.weight
        norm, s_in, scale, _ = self.grid_context()
        gain = _per_out(_bn_gain(norm, weight.shape[0], weight), weight) * s_in
        if scale is not None:
            gain = gain * _per_in(scale.to(weight), weight)
        return gain

    def _v(self) -> Tensor:
        """The weight in output units per input level, ``[C_out, ...]``, detached."""
        return self.weight.detach() * self._gain().detach()

    def grid(self) -> tuple[Tensor, Tensor | None]:
        """:func:`grid` of this layer's weight now: ``(step, thresholds or None)``; a
        layer added to others before its quantizer (a residual block) shares their grid,
        set by the widest weights of all of them."""
        s_out = self.grid_context()[3]
        v = self._v()
        if self.link.partners:
            (root,) = self._root
            widest = [
                root.get_submodule(p)._v().abs().flatten(1).amax(1) for p in self.link.partners
            ]
            v = torch.stack([v.abs().flatten(1).amax(1), *widest]).amax(0, keepdim=False)
            v = v.view(-1, 1)
        return grid(v, self.bits, None if s_out is None else s_out.to(v))

    def grid_weight(self) -> Tensor:
        with torch.no_grad():
            gain = self._gain()
            step, _ = self.grid()
            top = 2 ** (self.bits - 1) - 1
            step = _per_out(step, self.weight)
            v = self.weight * gain
            quantized = torch.clamp(torch.floor(v / step + 0.5), -top, top) * step / gain
        return self.weight + (quantized - self.weight).detach()

    def plain(self) -> nn.Module:
        """A plain layer holding the weight on its grid."""
        layer = copy.copy(self)
        layer.__class__ = type(self).__mro__[2]  # the torch class it extends
        layer._parameters = dict(self._parameters)
        layer.weight = nn.Parameter(self.grid_weight().detach().clone())
        for name in ("bits", "link", "_root", "_pixel_scale"):
            layer.__dict__.pop(name, None)
        return layer


class GridConv1d(_OnGrid, nn.Conv1d):
    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.grid_weight(), self.bias)


class GridConv2d(_OnGrid, nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.grid_weight(), self.bias)


class GridLinear(_OnGrid, nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.grid_weight(), self.bias)


_ON_GRID = {nn.Conv1d: GridConv1d, nn.Conv2d: GridConv2d, nn.Linear: GridLinear}


class GridShortcut(nn.Module):
    """An identity shortcut of a residual block on the grid of the layers it is added to:
    each level of its source (step ``s_b``) counts ``k_c = round(s_b / u_c)`` units
    ``u_c`` of the sum, so it passes ``x * k_c u_c / s_b``, a per-channel factor near 1
    (what an integer network can add). Made by :func:`attach_weight_grids`."""

    def __init__(self, link: Shortcut, root: nn.Module):
        super().__init__()
        self.link, self._root = link, (root,)

    def scale(self) -> tuple[Tensor, Tensor]:
        """``(k, factor)``: the integer multiples per channel, and ``k u_c / s_b``."""
        (root,) = self._root
        step, _ = root.get_submodule(self.link.layers[0]).grid()
        s_b = _step_of(root.get_submodule(self.link.source)) / self.link.divisor
        k = torch.floor(s_b / step + 0.5)
        return k, k * step / s_b

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            factor = self.scale()[1].to(x)
        return x * factor.view(1, -1, *([1] * (x.dim() - 2)))


def _step_of(module: nn.Module) -> Tensor:
    """The major path's step of a (path) quantizer, detached."""
    if hasattr(module, "step"):
        return module.step(0).detach()
    return module.scale.detach()


def _norm_of(module: nn.Module | None) -> nn.Module | None:
    if module is None:
        return None
    return module.norm(0) if hasattr(module, "norm") else module


def attach_weight_grids(
    net: nn.Module, export: nn.Module, bits: int, pixels, input_shape
) -> tuple[dict[str, Link], dict[str, Shortcut]]:
    """Train every conv / linear weight of the PET network ``net`` on its integer grid of
    ``bits`` bits (each layer becomes a :class:`GridConv2d`, :class:`GridLinear`, ...; its
    parameters keep their names), and every identity shortcut of a residual block on the
    grid of the layers it joins (:class:`GridShortcut`). ``export``: the plain QANN of
    ``net``'s major path, traced to find each layer's :class:`Link`. ``pixels``: the
    input's :class:`Pixels`; ``input_shape``: one sample's. Returns the links."""
    pixels = Pixels.of(pixels)
    found, shortcuts = links(trace(copy.deepcopy(export).eval()), QReLU, input_shape)
    for name, link in found.items():
        if link.source == INPUT and pixels is None:
            raise UnsupportedLayerError(
                f"'{name}' reads the input, and this dataset does not say how its pixels "
                "are stored: integer weights (pet.weight_bits) need integer pixels"
            )
        layer = net.get_submodule(name)
        kind = _ON_GRID.get(type(layer))
        if kind is None:
            raise UnsupportedLayerError(
                f"'{name}' is a {type(layer).__name__}: integer weights (pet.weight_bits) "
                "support Conv1d, Conv2d and Linear layers"
            )
        layer.__class__ = kind
        layer.bits, layer.link, layer._root = bits, link, (net,)
        layer._pixel_scale = pixels.scale() if link.source == INPUT else None
    for name, shortcut in shortcuts.items():
        net.set_submodule(name, GridShortcut(shortcut, net))
    return found, shortcuts


def remove_weight_grids(net: nn.Module) -> nn.Module:
    """``net`` with each layer on a grid replaced by a plain one holding its grid weight,
    each shortcut by the identity (the plan records its integer multiples)."""
    # Every plain layer first: a layer's grid may depend on its partners' weights.
    plain = [
        (name, module.plain() if isinstance(module, _OnGrid) else nn.Identity())
        for name, module in net.named_modules()
        if isinstance(module, (_OnGrid, GridShortcut))
    ]
    for name, module in plain:
        net.set_submodule(name, module)
    return net


def integer_plan(net: nn.Module, bits: int, pixels, grids) -> dict:
    """What :func:`integerize` needs besides the exported float QANN: the bits, the pixel
    format, per layer its thresholds ``m`` (or, for an output layer, its one step), per
    shortcut its integer multiples."""
    found, shortcuts = grids
    layers = {}
    for name in found:
        step, m = net.get_submodule(name).grid()
        layers[name] = (
            {"thresholds": [int(x) for x in m.tolist()]}
            if m is not None
            else {"step": float(step[0])}
        )
    multiples = {}
    for name in shortcuts:
        k, _ = net.get_submodule(name).scale()
        multiples[name] = [int(x) for x in k.tolist()]
    pixels = Pixels.of(pixels)
    return {
        "weight_bits": bits,
        "pixels": pixels.as_dict() if pixels else None,
        "layers": layers,
        "shortcuts": multiples,
    }


class PixelLevels(nn.Module):
    """The integer pixels behind a normalised input: ``p = round((x * std + mean) *
    max)``; refuses an input that is not on that grid (augmented, resized by another
    tool)."""

    spikezip_leaf = True

    def __init__(self, pixels: Pixels):
        super().__init__()
        self.register_buffer("mean", torch.tensor(pixels.mean, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(pixels.std, dtype=torch.float64))
        self.max = int(pixels.max)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        value = (x.to(self.std.dtype) * self.std.view(shape) + self.mean.view(shape)) * self.max
        p = torch.floor(value + 0.5)
        if x.numel() and float((value - p).abs().max()) > 1e-2:
            raise ValueError(
                f"the input is not made of integer pixels 0..{self.max} normalised with mean "
                f"{self.mean.tolist()} and std {self.std.tolist()}: an integer network "
                "takes the images as the dataset stores them"
            )
        return p.clamp(0, self.max).to(x.dtype)


class IntQReLU(nn.Module):
    """The integer Q-ReLU: level ``clip(floor((z + floor(m / 2)) / m), low, n)`` of an
    integer input ``z`` and integer thresholds ``m`` (one per channel: ``[C, 1, ...]``
    broadcast against ``[B, C, ...]``); the level itself is the output (its unit, one
    spike, is folded into the next layer's integer weights)."""

    spikezip_leaf = True

    def __init__(self, thresholds: Tensor, levels: int, low: int = 0):
        super().__init__()
        self.register_buffer("threshold", thresholds.detach().clone())
        self.levels, self.low = int(levels), int(low)
        # The largest magnitude its neurons' membrane can take (set by integerize).
        self.register_bound = 2**62

    @property
    def min_level(self) -> int:
        return self.low

    def forward(self, z: Tensor) -> Tensor:
        m = self.threshold.to(z.dtype)
        return torch.clamp(torch.floor((z + torch.floor(m / 2)) / m), self.low, self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, channels={self.threshold.numel()}, low={self.low}"


def _exact_integers(values: Tensor, what: str) -> Tensor:
    rounded = torch.floor(values + 0.5)
    off = float((values - rounded).abs().max()) if values.numel() else 0.0
    if off > 1e-3:
        raise UnsupportedLayerError(
            f"{what} is not on the integer grid its plan records (off by {off:.3g} of a "
            "step): the QANN was not trained with these pet.weight_bits"
        )
    return rounded


def integerize(qann: nn.Module, plan: dict, input_shape) -> IntegerQANN:
    """The integer QANN of a float QANN trained with ``pet.weight_bits`` (its ``plan``:
    :func:`integer_plan`): a graph module computing in float64 integers, its input the
    normalised images (turned back into pixels), its output the classifier's integers.
    Attributes ``weight_bits``, ``bias_bits``, ``accumulator_bits`` (the widest
    accumulator any input can produce), ``plan`` and ``source`` (``qann``).

    Raises:
        UnsupportedLayerError: a layer the plan does not cover, weights off its grid, or
            an accumulator that could leave float64's exact integers.
    """
    bits = int(plan["weight_bits"])
    top = 2 ** (bits - 1) - 1
    pixels = Pixels.of(plan.get("pixels"))
    gm = trace(copy.deepcopy(qann).double().eval())
    fuse_batchnorm(gm)
    found, shortcuts = links(gm, QReLU, input_shape)
    shapes = _shapes(gm, input_shape)
    missing = sorted(set(found) - set(plan["layers"]))
    missing += sorted(set(shortcuts) - set(plan.get("shortcuts", {})))
    if missing:
        raise UnsupportedLayerError(f"the integer plan has no grid for {missing}")
    levels_of = {n: m for n, m in gm.named_modules() if isinstance(m, QReLU)}
    nodes = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    thresholds: dict[str, Tensor] = {}
    max_level = {INPUT: float(pixels.max) if pixels else 0.0}
    for name, q in levels_of.items():
        max_level[name] = float(max(q.levels, -q.min_level))
    bias_bits, widest = 1, 1
    bounds: dict[str | None, float] = {}  # per quantizer: the largest sum feeding it

    def reach(target: str | None, name: str, value: float) -> None:
        # The largest accumulator: every input at its largest level, plus the bias, plus
        # a threshold (the membrane before firing holds its rest value too).
        if target is None:
            bounds[name] = value
        else:
            bounds[target] = bounds.get(target, float(thresholds[target].max())) + value

    for name, link in found.items():
        layer = gm.get_submodule(name)
        weight = layer.weight.detach().double()
        s_in = 1.0
        if link.source != INPUT:
            s_in = float(levels_of[link.source].scale.detach()) / link.divisor
        gain = torch.full((weight.shape[0],), s_in, dtype=torch.float64)
        if link.source == INPUT:
            scale = _per_in(pixels.scale(), weight)
        else:
            scale = torch.ones((), dtype=torch.float64)
        v = weight * _per_out(gain, weight) * scale
        entry = plan["layers"][name]
        if link.target is not None:
            m = torch.tensor(entry["thresholds"], dtype=torch.float64)
            unit = float(levels_of[link.target].scale.detach()) / m
            thresholds[link.target] = m
        else:
            unit = torch.full((weight.shape[0],), float(entry["step"]), dtype=torch.float64)
        k = _exact_integers(v / _per_out(unit, weight), f"the weights of '{name}'")
        if float(k.abs().max()) > top:
            raise UnsupportedLayerError(f"'{name}' has weights beyond {bits} bits")
        bias = (
            layer.bias.detach().double()
            if layer.bias is not None
            else torch.zeros(weight.shape[0], dtype=torch.float64)
        )
        node = nodes[name]
        if link.source == INPUT:
            # The normalised input is a * p + c: the offset c, through this layer's zero
            # padding, is a bias that differs at the borders: a bias map.
            offset = pixels.offset().view(1, -1, *([1] * (len(input_shape) - 1)))
            constant = offset.expand(1, *input_shape).contiguous()
            if isinstance(layer, nn.Linear):
                constant = constant.flatten(1)
                shifted = F.linear(constant, weight, bias)[0]
            else:
                shifted = layer._conv_forward(constant, weight, bias)[0]
            bias = shifted
        shape = (-1,) + (1,) * (bias.dim() - 1)
        b = torch.floor(bias / unit.view(shape) + 0.5)
        bias_bits = max(bias_bits, bits_for(int(b.min()), int(b.max())))
        # A sum pooling on the way adds `divisor` inputs into each one the layer reads.
        inputs = k.abs().flatten(1).sum(1) * max_level[link.source] * link.divisor
        reach(link.target, name, float((inputs.view(shape) + b.abs()).max()))
        with torch.no_grad():
            layer.weight.copy_(k)
            if b.dim() == 1:
                if layer.bias is None:
                    layer.bias = nn.Parameter(b.clone())
                else:
                    layer.bias.copy_(b)
            else:  # a bias map: added after the layer, a constant of the graph
                layer.bias = None
                buffer = f"{name.replace('.', '_')}_bias_map"
                gm.register_buffer(buffer, b.unsqueeze(0).clone())
                with gm.graph.inserting_after(node):
                    get = gm.graph.get_attr(buffer)
                with gm.graph.inserting_after(get):
                    added = gm.graph.call_function(torch.add, (node, get))
                node.replace_all_uses_with(added, delete_user_cb=lambda u, a=added: u is not a)
    for name, shortcut in shortcuts.items():
        # An identity shortcut: k_c units of the sum per level, a depthwise 1x1 conv.
        k = torch.tensor(plan["shortcuts"][name], dtype=torch.float64)
        if len(shapes[nodes[name].name]) != 3:
            raise UnsupportedLayerError(f"'{name}': integer shortcuts are of [C, H, W] maps")
        conv = nn.Conv2d(len(k), len(k), 1, groups=len(k), bias=False).double()
        with torch.no_grad():
            conv.weight.copy_(k.view(-1, 1, 1, 1))
        gm.set_submodule(name, conv)
        reach(shortcut.target, name, float(k.max()) * max_level[shortcut.source] * shortcut.divisor)
    for where, bound in bounds.items():
        if bound >= EXACT_BELOW:
            raise UnsupportedLayerError(
                f"the input of '{where}' can reach {bound:.3g}, beyond float64's exact integers"
            )
        widest = max(widest, bits_for(-int(bound), int(bound)))
    for name, q in levels_of.items():
        if name not in thresholds:
            raise UnsupportedLayerError(f"'{name}' follows no conv / linear layer of the plan")
        m = thresholds[name]
        target = nodes[name]
        shape = _threshold_shape(gm, target)
        integer = IntQReLU(m.view(shape), q.levels, q.min_level)
        # The membrane of its neurons: the largest sum, less or more the tracer's reach.
        levels = max(q.levels, -q.min_level)
        integer.register_bound = int(bounds[name] + levels * float(m.max())) + 1
        gm.set_submodule(name, integer)
    for node in list(gm.graph.nodes):
        module = _module(gm, node)
        if isinstance(module, nn.AvgPool2d):  # its divisor is in the next layer's unit
            summed = nn.AvgPool2d(
                module.kernel_size, module.stride, module.padding, module.ceil_mode,
                module.count_include_pad, divisor_override=1,
            )  # fmt: skip
            gm.set_submodule(node.target, summed)
        elif isinstance(module, nn.AdaptiveAvgPool2d):  # whole windows (links checked it)
            size_in, size_out = shapes[node.args[0].name][-2:], shapes[node.name][-2:]
            window = tuple(i // o for i, o in zip(size_in, size_out, strict=True))
            gm.set_submodule(node.target, nn.AvgPool2d(window, window, divisor_override=1))
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    gm.add_submodule("pixels", PixelLevels(pixels or Pixels((0.0,), (1.0,), 1)))
    with gm.graph.inserting_after(placeholder):
        levels = gm.graph.call_module("pixels", (placeholder,))
    placeholder.replace_all_uses_with(levels, delete_user_cb=lambda u: u is not levels)
    gm.graph.lint()
    result = IntegerQANN(gm, gm.graph).double().eval()
    result.weight_bits, result.bias_bits, result.accumulator_bits = bits, bias_bits, widest
    result.plan = plan
    # The float QANN it came from, kept unregistered (not in the state dict): what a file
    # stores to rebuild it.
    object.__setattr__(result, "source", qann)
    return result


class IntegerQANN(fx.GraphModule):
    """An integer QANN (:func:`integerize`): a graph module that keeps its attributes
    (bits, plan, float source) through ``copy.deepcopy``, which a plain one drops."""

    _kept = ("weight_bits", "bias_bits", "accumulator_bits", "plan", "source")

    def __deepcopy__(self, memo):
        copied = super().__deepcopy__(memo)
        for name in self._kept:
            if name in self.__dict__:
                object.__setattr__(copied, name, copy.deepcopy(self.__dict__[name], memo))
        return copied


def _threshold_shape(gm: fx.GraphModule, node: fx.Node) -> tuple[int, ...]:
    """``[C, 1, ...]`` for a quantizer after a conv, ``[C]`` after a linear layer."""
    prev = node.args[0]
    while isinstance(prev, fx.Node):
        m = _module(gm, prev)
        if isinstance(m, WEIGHTED):
            return (-1,) + (1,) * (m.weight.dim() - 2)
        prev = prev.args[0] if prev.args else None
    return (-1,)


def is_integer(module: nn.Module) -> bool:
    """Whether ``module`` is an integer QANN (:func:`integerize`)."""
    return getattr(module, "weight_bits", None) is not None and any(
        isinstance(m, IntQReLU) for m in module.modules()
    )


__all__ = [
    "INPUT",
    "bits_for",
    "IntQReLU",
    "IntegerQANN",
    "Link",
    "PixelLevels",
    "Pixels",
    "attach_weight_grids",
    "check_weight_bits",
    "grid",
    "integer_plan",
    "integerize",
    "is_integer",
    "links",
    "remove_weight_grids",
]
