"""``convert.py export=nir``: the IF networks of the rate and QCFS baselines in the
Neuromorphic Intermediate Representation (the ``nir`` package; Pedersen et al., "Neuromorphic
intermediate representation: a unified instruction set for interoperable brain-inspired
computing", Nature Communications 2024).

What NIR 1.0 can and cannot say about our SNNs:

- An ST-BIF neuron (SpikeZIP's) has no NIR node: NIR's neurons fire unsigned spikes and
  keep no bounded spike tracer, so a SpikeZIP SNN does not export to NIR (use
  ``export=integer``, :mod:`spikezip.export.integer`).
- NIR's ``IF`` resets to ``v_reset`` and fires when ``v > v_threshold``; our IF neurons
  reset by subtraction, fire when ``v >= v_threshold`` and start at ``V0`` (``Vthr / 2``
  for QCFS). Each IF node is written with ``r = 1``, ``v_threshold = Vthr``,
  ``v_reset = 0`` and the three differences in its metadata (``reset: "subtract"``,
  ``fires_at: ">="``, ``v_initial``); :func:`simulate_nir` honours them. A NIR simulator
  that ignores the metadata runs a different (reset-to-zero) network.
- A spike carries ``Vthr`` downstream (our neurons output ``spike * Vthr``): a ``Scale``
  node after each IF node says so.
- Time is discrete (one step, ``dt = 1``); the input and every bias enter at full size on
  every step (the rate code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikezip.export.integer import ExportError
from spikezip.io import atomic_write
from spikezip.snn.layers import SpikingAffine
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import IFNeuron
from spikezip.tracing import describe, op_name


def _array(t: Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def to_nir(snn: SpikingNetwork, input_shape):
    """The NIR graph of a rate-coded IF SNN (the rate and QCFS baselines).

    Raises:
        ExportError: a neuron NIR cannot express (ST-BIF), another encoding than the
            rate code, or an operation without a NIR node; named.
    """
    import nir

    if snn.release.steps is not None:
        raise ExportError(
            "NIR export takes rate-coded IF networks (method=rate or qcfs); a SpikeZIP SNN's "
            "ST-BIF neurons (signed spikes, a bounded tracer) have no NIR node: use "
            "export=integer"
        )
    gm, shapes = snn.graph, snn.node_shapes(input_shape)
    nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    edges, last = [], {}

    def add(name: str, node, source: str) -> None:
        nodes[name] = node
        edges.append((source, name))

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            last[node.name] = "input"
            continue
        if node.op == "output":
            shape = shapes[node.args[0].name]
            add(
                "output",
                nir.Output(output_type={"output": np.array(shape)}),
                last[node.args[0].name],
            )
            continue
        source = last.get(getattr(node.args[0], "name", None)) if node.args else None
        if source is None:
            raise ExportError(f"{describe(node)}: NIR export takes a chain of layers")
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        name = str(node.target) if module is not None else node.name
        if isinstance(module, nn.Identity):  # a dropout of the ANN: nothing to write
            last[node.name] = source
            continue
        if isinstance(module, SpikingAffine):
            layer, bias = module.layer, _array(module.bias)
            if isinstance(layer, nn.Linear):
                add(name, nir.Affine(weight=_array(layer.weight), bias=bias), source)
            elif isinstance(layer, nn.Conv2d) and not isinstance(layer.padding, str):
                add(name, nir.Conv2d(
                    input_shape=shapes[node.args[0].name][1:], weight=_array(layer.weight),
                    stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                    groups=layer.groups, bias=bias,
                ), source)  # fmt: skip
            else:
                raise ExportError(f"'{name}' ({type(layer).__name__}) has no NIR node here")
        elif isinstance(module, IFNeuron):
            shape = shapes[node.name]
            threshold = np.broadcast_to(_array(module.threshold), shape).copy()
            metadata = {
                "reset": "subtract",
                "fires_at": ">=",
                "v_initial": module.start * threshold,
            }
            neuron = nir.IF(r=np.ones(shape), v_threshold=threshold, v_reset=np.zeros(shape),
                            metadata=metadata)  # fmt: skip
            add(name, neuron, source)
            add(f"{name}.scale", nir.Scale(scale=threshold.copy()), name)  # spike * Vthr
            last[node.name] = f"{name}.scale"
            continue
        elif isinstance(module, nn.AvgPool2d) and not module.ceil_mode:
            pair = lambda v: np.array(v if isinstance(v, (tuple, list)) else (v, v))  # noqa: E731
            padded = module.padding not in (0, (0, 0))
            if module.divisor_override is not None or (padded and not module.count_include_pad):
                raise ExportError(f"'{name}': NIR's AvgPool2d averages over whole windows")
            kernel, stride = pair(module.kernel_size), pair(module.stride)
            add(name, nir.AvgPool2d(kernel, stride, pair(module.padding)), source)
        elif isinstance(module, nn.Flatten) or (
            node.op == "call_function" and op_name(node) == "flatten"
        ):
            shape = shapes[node.args[0].name]
            add(name, nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0), source)
        else:
            raise ExportError(f"{describe(node)} has no NIR node (conv2d, affine, IF, pooling)")
        last[node.name] = name
    return nir.NIRGraph(nodes=nodes, edges=edges)


def write_nir(snn: SpikingNetwork, path: str | Path, input_shape) -> Path:
    """Write :func:`to_nir` of ``snn`` to ``path`` (an HDF5 ``.nir`` file, whole or not
    at all)."""
    import nir

    graph = to_nir(snn, input_shape)
    return atomic_write(path, lambda tmp: nir.write(str(tmp), graph))


def _order(graph) -> list[str]:
    following = dict(graph.edges)
    order, name = [], "input"
    while name in following:
        name = following[name]
        order.append(name)
    return order


@torch.no_grad()
def simulate_nir(graph, x: Tensor, timesteps: int) -> Tensor:
    """Simulate a NIR graph written by :func:`to_nir` (a chain), honouring its IF nodes'
    metadata, on ``x [B, ...]`` fed at every step; returns the output accumulated after
    each step, ``[T, B, ...]``."""
    order = _order(graph)
    state: dict[str, Tensor] = {}
    total, outputs = None, []
    t64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    for _ in range(timesteps):
        y = x.double()
        for name in order:
            node = graph.nodes[name]
            kind = type(node).__name__
            if kind == "Affine":
                y = F.linear(y, t64(node.weight), t64(node.bias))
            elif kind == "Conv2d":
                y = F.conv2d(y, t64(node.weight), t64(node.bias), tuple(node.stride),
                             tuple(node.padding), tuple(node.dilation), node.groups)  # fmt: skip
            elif kind == "IF":
                threshold = t64(node.v_threshold)
                if name not in state:
                    state[name] = t64(node.metadata["v_initial"]).expand_as(y).clone()
                v = state[name] + t64(node.r) * y
                spike = v >= threshold if node.metadata.get("fires_at") == ">=" else v > threshold
                spike = spike.double()
                if node.metadata.get("reset") == "subtract":
                    v = v - spike * threshold
                else:
                    v = torch.where(spike > 0, t64(node.v_reset), v)
                state[name], y = v, spike
            elif kind == "Scale":
                y = y * t64(node.scale)
            elif kind == "AvgPool2d":
                y = F.avg_pool2d(y, tuple(int(k) for k in node.kernel_size),
                                 tuple(int(s) for s in node.stride),
                                 tuple(int(p) for p in node.padding))  # fmt: skip
            elif kind == "Flatten":
                y = y.flatten(1)
            elif kind == "Output":
                break
            else:
                raise ValueError(f"simulate_nir does not know NIR node {kind} ('{name}')")
        total = y.clone() if total is None else total + y
        outputs.append(total.clone())
    return torch.stack(outputs)
