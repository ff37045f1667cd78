"""``convert.py export=integer``: an integer SNN as a self-contained directory a chip team
can run without torch (``graph.json``, ``weights.npz``, test vectors ``expected.npz``;
the format is ``docs/integer_export.md``, its JSON schema
``docs/integer_export.schema.json``; :mod:`spikezip.export.reference` simulates it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, fx, nn

from spikezip.errors import SpikeZIPError
from spikezip.io import write_json
from spikezip.snn.layers import ReleasedConstant, SpikingAffine
from spikezip.snn.network import MAX_TIMESTEPS, SpikingNetwork
from spikezip.snn.neuron import IntegerSTBIF
from spikezip.tracing import describe, op_name

FORMAT = "spikezip-integer-snn/1"
CHECKED_STEPS = 32  # the test vectors hold the outputs at T = 1..32


class ExportError(SpikeZIPError, ValueError):
    """The SNN holds something the export format cannot express; nothing was written."""


def _ints(t: Tensor) -> np.ndarray:
    values = t.detach().cpu().double()
    if not torch.equal(values, torch.floor(values)):
        raise ExportError("a tensor meant to be integer is not: export an integer SNN")
    big = float(values.abs().max()) if values.numel() else 0.0
    # The narrowest type that holds them (a shortcut's multiples exceed the weight bits).
    dtype = next(t for t in (np.int8, np.int16, np.int32, np.int64) if big <= np.iinfo(t).max)
    return values.numpy().astype(dtype)


def graph_of(snn: SpikingNetwork) -> tuple[dict, dict[str, np.ndarray]]:
    """The export's ``graph.json`` content and its arrays, from an integer SNN.

    Raises:
        ExportError: a node the format has no operation for, named.
    """
    if not isinstance(getattr(snn, "input_map", None), nn.Module):
        raise ExportError(
            "only an integer SNN exports (train with pet.weight_bits=B; convert its qann.ckpt)"
        )
    gm: fx.GraphModule = snn.graph
    pixels = snn.input_map
    arrays: dict[str, np.ndarray] = {}
    layers: list[dict] = []
    names: dict[str, str] = {}  # fx node -> the name of the layer whose output it is
    released: dict[str, Tensor] = {}  # a released constant's node -> its value
    output = None

    def source(node) -> str:
        if not isinstance(node, fx.Node) or node.name not in names:
            raise ExportError(f"{describe(node)} reads a value the export does not hold")
        return names[node.name]

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            names[node.name] = "input"
            continue
        if node.op == "get_attr":
            continue
        if node.op == "output":
            output = source(node.args[0])
            continue
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        name = str(node.target) if module is not None else node.name
        if isinstance(module, ReleasedConstant) and node.args[0].op == "get_attr":
            released[node.name] = getattr(gm, node.args[0].target)
            continue
        if isinstance(module, nn.Identity):  # the same values under another name
            names[node.name] = source(node.args[0])
            continue
        if (
            node.op == "call_function"
            and op_name(node) == "add"
            and len(node.args) == 2
            and all(isinstance(a, fx.Node) and a.name in names for a in node.args)
        ):  # a residual sum of two streams
            entry = {"name": node.name, "op": "add", "input": source(node.args[0])}
            entry["other"] = source(node.args[1])
            layers.append(entry)
            names[node.name] = node.name
            continue
        if node.op == "call_function" and op_name(node) == "add" and len(node.args) == 2:
            layer, constant = node.args
            entry = next((e for e in layers if e["name"] == names.get(layer.name)), None)
            if (
                entry is None
                or constant.name not in released
                or entry["op"] not in ("conv1d", "conv2d", "linear")
                or np.any(arrays[entry["bias"]])  # share(b) + share(c) is not share(b + c)
            ):
                raise ExportError(
                    f"{describe(node)}: the export adds a constant only to a conv / linear "
                    "layer without a bias of its own (its bias, released as one)"
                )
            extra = released[constant.name][0]
            arrays[entry["bias"]] = _ints(extra.double())
            names[node.name] = entry["name"]
            continue
        entry = {"name": name, "input": source(node.args[0])}
        if isinstance(module, SpikingAffine):
            inner = module.layer
            entry["weight"], entry["bias"] = f"{name}.weight", f"{name}.bias"
            arrays[entry["weight"]] = _ints(inner.weight)
            arrays[entry["bias"]] = _ints(module.bias)
            if isinstance(inner, nn.Linear):
                entry["op"] = "linear"
            elif isinstance(inner, (nn.Conv1d, nn.Conv2d)) and inner.padding_mode == "zeros":
                entry["op"] = f"conv{inner.weight.dim() - 2}d"
                entry.update(
                    stride=list(inner.stride),
                    padding=list(inner.padding),
                    dilation=list(inner.dilation),
                    groups=inner.groups,
                )
                if isinstance(inner.padding, str):
                    raise ExportError(f"'{name}': padding='{inner.padding}' does not export")
            else:
                raise ExportError(f"'{name}' is a {type(inner).__name__}: it does not export")
        elif isinstance(module, IntegerSTBIF):
            entry.update(op="stbif", threshold=f"{name}.threshold")
            entry.update(tracer_min=module.tracer_min, tracer_max=module.levels)
            arrays[entry["threshold"]] = _ints(module.threshold.flatten())
        elif isinstance(module, nn.AvgPool2d) and module.divisor_override == 1:
            pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]  # noqa: E731
            if module.ceil_mode:
                raise ExportError(f"'{name}': ceil_mode pooling does not export")
            entry.update(op="sum_pool2d", kernel=pair(module.kernel_size))
            entry.update(stride=pair(module.stride), padding=pair(module.padding))
        elif _flattens(node, module):
            entry["op"] = "flatten"
        else:
            raise ExportError(
                f"{describe(node)} has no operation in the integer export format (conv, "
                "linear, stbif, sum_pool2d, flatten, add)"
            )
        layers.append(entry)
        names[node.name] = name
    graph = {
        "format": FORMAT,
        "input": {
            "shape": None,  # set by export_integer
            "pixels": {
                "mean": pixels.mean.tolist(),
                "std": pixels.std.tolist(),
                "max": pixels.max,
            },
        },
        "release": {
            "steps": snn.release.steps,
            "rule": "share(X, t) = floor(t X / steps) - floor((t - 1) X / steps), t <= steps",
        },
        "weight_bits": snn.weight_bits,
        "bias_bits": snn.bias_bits,
        "layers": layers,
        "output": output,
    }
    return graph, arrays


def _flattens(node: fx.Node, module: nn.Module | None) -> bool:
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    if node.op in ("call_function", "call_method") and op_name(node) == "flatten":
        rest = list(node.args[1:]) + list(node.kwargs.values())
        return rest in ([1], [1, -1])
    return False


def export_integer(snn: SpikingNetwork, directory: str | Path, inputs: Tensor, input_shape) -> Path:
    """Write the export of an integer ``snn`` into ``directory``: ``graph.json``,
    ``weights.npz`` and ``expected.npz`` (the integer pixels of ``inputs``, the SNN's
    accumulated outputs at T = 1..32, each sample's ``T_eq`` and its output there, from
    the torch simulation). Written into ``<directory>.partial`` and renamed when whole.
    Returns the directory.

    Raises:
        ExportError: the SNN is not integer, holds an operation the format lacks, or a
            test vector did not settle.
    """
    graph, arrays = graph_of(snn)
    graph["input"]["shape"] = list(input_shape)
    directory = Path(directory)
    x = inputs.to(device=snn.device, dtype=snn.dtype)
    pixels = snn.input_map(x)
    sim = snn.run(x, MAX_TIMESTEPS, keep=CHECKED_STEPS)
    if not bool(sim.at_equilibrium.all()):
        raise ExportError(f"the test vectors did not settle within {MAX_TIMESTEPS} steps")
    expected = {
        "pixels": _ints(pixels),
        "outputs": np.stack([_ints(o) for o in sim.outputs]),
        "t_eq": sim.t_eq.cpu().numpy(),
        "final": _ints(sim.final),
    }
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for name, content in (("weights.npz", arrays), ("expected.npz", expected)):
            with open(partial / name, "wb") as f:
                np.savez(f, **content)
        write_json(graph, partial / "graph.json")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # nothing half-written is left
        raise
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return directory


__all__ = ["FORMAT", "ExportError", "export_integer", "graph_of"]
