"""Where a QANN beyond ReLU needs quantizers, and attention written out so they can go in.

A ReLU network has its quantizers where its ReLUs are. A transformer, a ConvNeXt or an
EfficientNet has GELU / SiLU / hardswish, LayerNorm, softmax attention and gates; its SNN
is exact whatever the quantizers (:mod:`spikezip.convertible`: accumulating operators
are exact), but it is spike-driven only where quantizers make it so. :func:`place_quantizers`
inserts one where each of these rules asks, and nowhere else:

(a) an elementwise non-linearity ``f`` (GELU, SiLU, hardswish, sigmoid, tanh, ...) gets a
    signed quantizer on its input: its neuron's spikes then carry ``f``'s change (graded
    spikes) instead of a dense accumulating ``f``;
(b) each operand of a product of two activations (``Q @ K^T``, ``A @ V``, a gate
    ``x * s``) that is not already a sum of spikes gets one (Q, K, V; the attention map,
    unsigned, as a softmax is never negative);
(c) a conv / linear layer reading the output of an accumulating operator (a LayerNorm,
    the attention product, a gate), through any linear operations, gets one on its input.

These are the places the SpikeZIP-TF recipe quantizes (after LayerNorm, Q / K / V, the
attention map, before the MLP's activation, before the output projection; You, Xu, Nie,
Deng, Guo, Wang and He, "SpikeZIP-TF: Conversion is All You Need for Transformer-based
SNN", ICML 2024, arXiv:2406.03470), derived
from the graph rather than from a model's class, so they hold for any model; the MLP's
activation gets no second quantizer after it (its graded spikes drive the next linear
layer directly, at a multiply per synapse). Signed quantizers quantize to ``[-n, n]``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import fx, nn

from spikezip.convertible import (
    _ELEMENTWISE_MODULES,
    _ELEMENTWISE_OPS,
    Kind,
    Plan,
    classify,
)
from spikezip.tracing import UnsupportedLayerError, describe, op_name

# What makes a quantizer: ``quantizer(signed)`` returns a fresh module.
Quantizer = Callable[[bool], nn.Module]

_PRODUCTS = frozenset({"matmul", "bmm", "mul", "imul", "einsum", "baddbmm"})
_NON_NEGATIVE_MODULES = (nn.Softmax, nn.Sigmoid, nn.Hardsigmoid)
_NON_NEGATIVE_OPS = frozenset({"softmax", "sigmoid", "hardsigmoid"})


class ExplicitAttention(nn.Module):
    """``nn.MultiheadAttention`` written out as linear layers, products and a softmax, so
    that quantizers can be placed between them and the SNN sees each operation. Same
    parameters (``in_proj_weight`` split into ``q`` / ``k`` / ``v``), same result in eval
    mode; the attention weights are not returned (``(output, None)``).

    Not supported (refused when built or traced): ``add_bias_kv``, ``add_zero_attn``,
    attention and key-padding masks, ``is_causal``.
    """

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if mha.bias_k is not None or mha.add_zero_attn:
            raise UnsupportedLayerError(
                "MultiheadAttention with add_bias_kv or add_zero_attn cannot be written out"
            )
        e, self.heads, self.batch_first = mha.embed_dim, mha.num_heads, mha.batch_first
        kdim, vdim = mha.kdim, mha.vdim
        bias = mha.in_proj_bias is not None
        self.q, self.k = nn.Linear(e, e, bias), nn.Linear(kdim, e, bias)
        self.v = nn.Linear(vdim, e, bias)
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                wq, wk, wv = mha.in_proj_weight.chunk(3)
            else:
                wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            for layer, w, i in ((self.q, wq, 0), (self.k, wk, 1), (self.v, wv, 2)):
                layer.weight.copy_(w)
                if bias:
                    layer.bias.copy_(mha.in_proj_bias[i * e : (i + 1) * e])
        self.out_proj = nn.Linear(e, e, mha.out_proj.bias is not None)
        self.out_proj.load_state_dict(mha.out_proj.state_dict())
        self.to(mha.out_proj.weight)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):  # fmt: skip
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise UnsupportedLayerError(
                "MultiheadAttention with a mask cannot be written out exactly here"
            )
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, n, e = query.shape
        m = key.shape[1]
        d = e // self.heads
        q = self.q(query).reshape(b, n, self.heads, d).transpose(1, 2)
        k = self.k(key).reshape(b, m, self.heads, d).transpose(1, 2)
        v = self.v(value).reshape(b, m, self.heads, d).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1) * d**-0.5).softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, e)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def explicit_attention(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """Rewrite ``gm`` in place: every ``nn.MultiheadAttention`` becomes an
    :class:`ExplicitAttention` (traced into when the graph is traced again), every
    ``F.scaled_dot_product_attention`` call the products and softmax it computes.
    Returns ``(where, what)`` for each rewrite."""
    done = []
    for name, module in list(gm.named_modules()):
        if isinstance(module, nn.MultiheadAttention):
            gm.set_submodule(name, ExplicitAttention(module))
            done.append((name, "MultiheadAttention -> explicit q/k/v, products and softmax"))
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and op_name(node) == "scaled_dot_product_attention":
            _write_out_sdpa(gm, node)
            done.append((node.name, f"{describe(node)} -> products and softmax"))
    if done:
        gm.graph.lint()
        gm.recompile()
    return done


def _write_out_sdpa(gm: fx.GraphModule, node: fx.Node) -> None:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    args = dict(zip(names, node.args, strict=False))
    args.update(node.kwargs)
    if args.get("attn_mask") is not None or args.get("is_causal"):
        raise UnsupportedLayerError(
            f"{describe(node)} uses a mask or is_causal: not written out exactly here"
        )
    if args.get("enable_gqa"):
        raise UnsupportedLayerError(f"{describe(node)} uses grouped-query attention")
    q, k, v = args["query"], args["key"], args["value"]
    graph = gm.graph
    with graph.inserting_before(node):
        scale = args.get("scale")
        if scale is None:
            d = graph.call_method("size", (q, -1))
            scale = graph.call_function(operator.pow, (d, -0.5))
        kt = graph.call_method("transpose", (k, -2, -1))
        scores = graph.call_function(operator.matmul, (q, kt))
        scores = graph.call_function(operator.mul, (scores, scale))
        attn = graph.call_method("softmax", (scores, -1))
        out = graph.call_function(operator.matmul, (attn, v))
    node.replace_all_uses_with(out)
    graph.erase_node(node)


def _elementwise(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _ELEMENTWISE_MODULES)
    return op_name(node) in _ELEMENTWISE_OPS


def _non_negative(node: fx.Node, gm: fx.GraphModule, plan: Plan) -> bool:
    """Whether ``node`` is a softmax / sigmoid output (through single-input linear ops)."""
    while plan.nodes.get(node.name) in (Kind.LINEAR, Kind.DROPOUT, Kind.KEEP):
        inputs = [a for a in node.all_input_nodes if a.name in plan.streams]
        if len(inputs) != 1:
            return False
        node = inputs[0]
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _NON_NEGATIVE_MODULES)
    return op_name(node) in _NON_NEGATIVE_OPS


def place_quantizers(
    gm: fx.GraphModule, activation: type[nn.Module], quantizer: Quantizer
) -> list[tuple[str, str]]:
    """Insert quantizers into ``gm`` (in place) where the rules of this module's docstring
    ask; ``activation`` is the quantizer type already there (a ReLU's). Returns
    ``(name, why)`` for each quantizer inserted."""
    plan = classify(gm, activation, no_accumulating=None)
    driven: dict[str, bool] = {}  # a sum of spikes (or the input, or constants)
    tainted: dict[str, bool] = {}  # reads an accumulating operator's output
    edges: list[tuple[fx.Node, fx.Node, str]] = []  # (producer, consumer, why)
    for node in gm.graph.nodes:
        kind = plan.nodes.get(node.name)
        inputs = [a for a in node.all_input_nodes if a.name in plan.streams]
        if node.op == "placeholder" or kind in (Kind.NEURON, Kind.GRADED, Kind.STATIC, None):
            driven[node.name], tainted[node.name] = True, False
        elif kind is Kind.AFFINE:
            driven[node.name], tainted[node.name] = False, False
            if any(tainted[a.name] for a in inputs):
                edges += [(a, node, "reads an accumulating operator") for a in inputs]
        elif kind is Kind.ACCUMULATE and _elementwise(node, gm) and len(inputs) == 1:
            edges.append((inputs[0], node, "graded spikes of an elementwise non-linearity"))
            driven[node.name], tainted[node.name] = True, False
        elif kind is Kind.ACCUMULATE:
            if op_name(node) in _PRODUCTS and len(inputs) > 1:
                edges += [(a, node, "operand of a product") for a in inputs if not driven[a.name]]
            driven[node.name], tainted[node.name] = False, True
        else:  # linear: as its inputs
            driven[node.name] = all(driven[a.name] for a in inputs)
            tainted[node.name] = any(tainted[a.name] for a in inputs)
    inserted: dict[str, fx.Node] = {}
    report = []
    for producer, consumer, why in edges:
        if producer.name not in inserted:
            signed = not _non_negative(producer, gm, plan)
            where = consumer.target if consumer.op == "call_module" else consumer.name
            name = _free_name(gm, f"{where}_in")
            gm.add_submodule(name, quantizer(signed))
            with gm.graph.inserting_after(producer):
                inserted[producer.name] = gm.graph.call_module(name, (producer,))
            report.append((name, f"{'signed' if signed else 'unsigned'} quantizer: {why}"))
        consumer.replace_input_with(producer, inserted[producer.name])
    if edges:
        gm.graph.lint()
        gm.recompile()
    return report


def _free_name(gm: fx.GraphModule, base: str) -> str:
    names = dict(gm.named_modules())
    name, k = base, 2
    while name in names:
        name, k = f"{base}_{k}", k + 1
    return name


__all__ = ["ExplicitAttention", "Quantizer", "explicit_attention", "place_quantizers"]
