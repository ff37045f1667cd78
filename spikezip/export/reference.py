"""The reference simulator of an exported integer SNN (``convert.py export=integer``):
NumPy and integers only, no torch. The format is ``docs/integer_export.md``.

    python -m spikezip.export.reference DIR            # the test vectors, checked
    python -m spikezip.export.reference DIR --steps 16 # and the outputs at T = 16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def load(directory) -> tuple[dict, dict]:
    """``(graph, arrays)`` of an export: ``graph.json`` and ``weights.npz``."""
    directory = Path(directory)
    graph = json.loads((directory / "graph.json").read_text())
    if graph.get("format") != "spikezip-integer-snn/1":
        raise ValueError(f"{directory} is not a SpikeZIP integer SNN export")
    with np.load(directory / "weights.npz") as arrays:
        return graph, {k: arrays[k].astype(np.int64) for k in arrays.files}


def conv(x, w, stride, padding, dilation, groups):
    """Integer convolution (1-d or 2-d) of ``x [B, C, ...]`` by ``w [O, C/g, k...]``."""
    dims = w.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    span = [d * (k - 1) + 1 for d, k in zip(dilation, w.shape[2:], strict=True)]
    win = sliding_window_view(x, span, axis=tuple(range(2, 2 + dims)))
    win = win[(..., *[slice(None, None, d) for d in dilation])]  # dilated taps
    win = win[(slice(None), slice(None), *[slice(None, None, s) for s in stride])]
    out, per = [], w.shape[0] // groups
    for g in range(groups):
        c = w.shape[1]
        part = win[:, g * c : (g + 1) * c]  # [B, c, *out, *k]
        part = np.moveaxis(part, 1, 1 + dims).reshape(
            *part.shape[:1], *part.shape[2 : 2 + dims], -1
        )
        out.append(part @ w[g * per : (g + 1) * per].reshape(per, -1).T)
    return np.moveaxis(np.concatenate(out, -1), -1, 1)


def sum_pool(x, kernel, stride, padding):
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    win = sliding_window_view(x, kernel, axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    return win.sum(axis=(-2, -1))


def share(total, t, steps):
    """The integer share step ``t`` (1-based) of ``steps`` receives of ``total``."""
    return (total * t) // steps - (total * (t - 1)) // steps


def run(graph, arrays, pixels, timesteps):
    """Simulate integer ``pixels [B, ...]`` for ``timesteps`` steps. Returns the output
    accumulated after each step ``[T, B, ...]`` and ``t_eq [B]`` (the step after which
    the sample's output no longer changes; -1 if not reached)."""
    steps = graph["release"]["steps"]
    layers = graph["layers"]
    state = {}  # stbif name -> (membrane, tracer)
    for layer in layers:
        if layer["op"] == "stbif":
            state[layer["name"]] = None
    total, outputs = None, []
    t_eq = np.full(len(pixels), -1)
    for t in range(1, timesteps + 1):
        releasing = t <= steps
        values = {"input": share(pixels, t, steps) if releasing else np.zeros_like(pixels)}
        fired = np.zeros(len(pixels), dtype=bool)
        for layer in layers:
            x, op = values[layer["input"]], layer["op"]
            if op in ("conv1d", "conv2d", "linear"):
                w = arrays[layer["weight"]]
                if op == "linear":
                    y = x @ w.T
                else:
                    y = conv(x, w, layer["stride"], layer["padding"], layer["dilation"],
                             layer["groups"])  # fmt: skip
                if releasing and layer.get("bias"):
                    b = arrays[layer["bias"]]
                    b = b.reshape(b.shape + (1,) * (y.ndim - 1 - b.ndim))
                    y = y + share(b, t, steps)
            elif op == "stbif":
                theta = arrays[layer["threshold"]]
                theta = theta.reshape(theta.shape + (1,) * (x.ndim - 1 - theta.ndim))
                if state[layer["name"]] is None:
                    state[layer["name"]] = (np.broadcast_to(theta // 2, x.shape).copy(), 0 * x)
                v, s = state[layer["name"]]
                v = v + x
                up = (v >= theta) & (s < layer["tracer_max"])
                down = (v < 0) & (s > layer["tracer_min"])
                y = up.astype(np.int64) - down
                v, s = v - y * theta, s + y
                state[layer["name"]] = (v, s)
                fired |= (y != 0).reshape(len(y), -1).any(1)
            elif op == "sum_pool2d":
                y = sum_pool(x, layer["kernel"], layer["stride"], layer["padding"])
            elif op == "flatten":
                y = x.reshape(len(x), -1)
            elif op == "add":
                y = x + values[layer["other"]]
            else:
                raise ValueError(f"unknown operation {op!r} in layer {layer['name']}")
            values[layer["name"]] = y
        out = values[graph["output"]]
        total = out.copy() if total is None else total + out
        outputs.append(total.copy())
        if not releasing:
            t_eq = np.where((t_eq < 0) & ~fired, t - 1, t_eq)
    return np.stack(outputs), t_eq


def check(directory) -> int:
    """Run the export's test vectors (``expected.npz``): the outputs at T = 1..32 and at
    each sample's ``T_eq``, and ``T_eq`` itself. Prints and returns the mismatches."""
    graph, arrays = load(directory)
    with np.load(Path(directory) / "expected.npz") as expected:
        want = {k: expected[k].astype(np.int64) for k in expected.files}
    horizon = max(len(want["outputs"]), int(want["t_eq"].max()) + 1)
    got, t_eq = run(graph, arrays, want["pixels"], horizon)
    wrong = [
        t + 1 for t in range(len(want["outputs"])) if not np.array_equal(got[t], want["outputs"][t])
    ]
    at_eq = got[want["t_eq"] - 1, np.arange(len(t_eq))]  # the output at each sample's T_eq
    final = np.array_equal(at_eq, want["final"])
    same = np.array_equal(t_eq, want["t_eq"])
    print(f"{len(t_eq)} inputs: outputs differ at {len(wrong)} of T = 1..{len(want['outputs'])}"
          f" {wrong[:8]}; at equilibrium {'identical' if final else 'DIFFERENT'}; "
          f"T_eq {'identical' if same else 'DIFFERENT'}")  # fmt: skip
    return len(wrong) + (not final) + (not same)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--steps", type=int, help="also print the outputs at this T")
    args = parser.parse_args(argv)
    failures = check(args.directory)
    if args.steps:
        graph, arrays = load(args.directory)
        with np.load(Path(args.directory) / "expected.npz") as expected:
            outputs, _ = run(graph, arrays, expected["pixels"].astype(np.int64), args.steps)
        print(f"outputs at T = {args.steps}:\n{outputs[-1]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
