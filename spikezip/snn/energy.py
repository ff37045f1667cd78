"""Synaptic operations and energy of an SNN against the FLOPs of its ANN (paper §4.5).

A spike (of either sign) costs one synaptic operation (SOP) per synapse it drives: its
*fan-out*, the number of multiply-accumulates it takes part in at the next conv / linear
layers, through any pooling, flattening or residual adds on the way. The first layer
receives the analog input, so it is counted as FLOPs (2 per multiply-accumulate, as
``torch.utils.flop_counter`` counts the ANN). Bias releases are additions without
synapses and are not counted.

Beyond unit spikes (:mod:`spikezip.snn.operators`): a *graded* spike carries a value, so
each synapse it reaches costs a multiply-accumulate (2 FLOPs), not a SOP. An
*accumulating* operator computes densely at every step where its input changed: the
FLOPs ``torch.utils.flop_counter`` counts for it (its products) plus one per output
element (the elementwise work it does not count), per sample whose input changed; and
its output is dense, so what it drives costs multiply-accumulates too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.utils.flop_counter import FlopCounterMode

from spikezip.settings import positive
from spikezip.snn.layers import SpikingAffine, SpikingBatchNorm
from spikezip.snn.measure import LayerSums, ReduceSum, sum_across
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import SpikingNeuron
from spikezip.snn.operators import Accumulating

INPUT = "<input>"


def _adaptive_window_counts(in_size: list[int], out_size: list[int]) -> Tensor:
    """Number of inputs in each adaptive-pooling window, ``[*out_size]``."""
    counts = torch.ones(())
    for n, o in zip(in_size, out_size, strict=True):
        sizes = torch.tensor(
            [math.ceil((i + 1) * n / o) - math.floor(i * n / o) for i in range(o)],
            dtype=torch.float,
        )
        counts = counts.unsqueeze(-1) * sizes
    return counts


class _FanoutInterpreter(fx.Interpreter):
    """Runs the SNN graph in 'counting' mode: unit weights, sum-pooling, one source.

    Only the source (a neuron layer's output, or the network input) carries a value; the
    summed outputs of the first conv / linear layers it reaches count one per
    multiply-accumulate, so the gradient at the source is each element's fan-out.
    """

    def __init__(self, gm: fx.GraphModule, source: str):
        super().__init__(gm)
        self.source = source
        self.z: Tensor | None = None
        self.macs = torch.zeros(())
        self.op_flops: dict[str, float] = {}  # accumulating operator -> FLOPs per evaluation

    def _source(self, like: Tensor) -> Tensor:
        self.z = torch.zeros_like(like, requires_grad=True)
        return self.z

    def placeholder(self, target, args, kwargs):
        x = super().placeholder(target, args, kwargs)
        return self._source(x) if self.source == INPUT else torch.zeros_like(x)

    def call_module(self, target, args, kwargs):
        m = self.fetch_attr(target)
        x = args[0]
        if isinstance(m, SpikingNeuron):
            return self._source(x) if target == self.source else torch.zeros_like(x)
        if isinstance(m, Accumulating):  # counting stops at it; its output may be the source
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                out = m.apply(*args, **kwargs)
            self.op_flops[target] = counter.get_total_flops() + out.numel()
            return self._source(out) if target == self.source else torch.zeros_like(out)
        if isinstance(m, SpikingAffine):
            layer = m.layer
            ones = torch.ones_like(layer.weight)
            if isinstance(layer, nn.Linear):
                out = F.linear(x, ones)
            else:
                out = layer._conv_forward(x, ones, None)
            self.macs = self.macs + out.sum()
            return torch.zeros_like(out).detach()  # counting stops at the first synapse
        if isinstance(m, SpikingBatchNorm):
            return x  # a per-channel gain: one value in, one value out, no synapse
        if isinstance(m, (nn.AvgPool2d, nn.AvgPool3d)):
            return m.__class__(m.kernel_size, m.stride, m.padding, m.ceil_mode, divisor_override=1)(
                x
            )
        if isinstance(m, nn.AvgPool1d):
            pooled = F.avg_pool2d(
                x.unsqueeze(-2),
                (1, m.kernel_size[0]),
                (1, m.stride[0]),
                (0, m.padding[0]),
                m.ceil_mode,
                divisor_override=1,
            )
            return pooled.squeeze(-2)
        if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
            out = m(x)
            counts = _adaptive_window_counts(list(x.shape[2:]), list(out.shape[2:]))
            return out * counts.to(out)
        return super().call_module(target, args, kwargs)

    def _call(self, name: str, args, kwargs, run):
        """Functional versions of the linear maps: sums instead of means, signs dropped."""
        tensors = [a for a in args if isinstance(a, Tensor)]
        if not tensors:  # arithmetic on sizes (x.size(1) * 64): no activations involved
            return run(*args, **kwargs)
        if name in ("linear", "conv1d", "conv2d", "conv3d") and len(args) > 1:
            ones = torch.ones_like(args[1])  # F.linear / F.conv2d: unit weights count MACs
            out = run(
                args[0], ones, None, *args[3:], **{k: v for k, v in kwargs.items() if k != "bias"}
            )
            self.macs = self.macs + out.sum()
            return torch.zeros_like(out).detach()
        if name in ("mul", "imul", "truediv", "itruediv", "div", "neg"):
            return tensors[0]  # scaling by a constant: one value in, one value out
        if name in ("sub", "isub"):
            return torch.add(tensors[0], tensors[1]) if len(tensors) == 2 else tensors[0]
        if name == "mean":
            return torch.sum(*args, **kwargs)
        if name in ("avg_pool2d", "avg_pool3d"):  # the 7th argument is divisor_override
            return run(*args[:6], **{**kwargs, "divisor_override": 1})
        if name == "avg_pool1d":  # no divisor_override: average over the padded window x k
            names = ("kernel_size", "stride", "padding", "ceil_mode")
            params = dict(zip(names, args[1:5], strict=False))  # the positional ones given
            params.update({k: v for k, v in kwargs.items() if k != "count_include_pad"})
            kernel = params["kernel_size"]
            kernel = kernel[0] if isinstance(kernel, (tuple, list)) else kernel
            return run(args[0], **params, count_include_pad=True) * kernel
        if name.startswith("adaptive_avg_pool"):
            out = run(*args, **kwargs)
            counts = _adaptive_window_counts(list(args[0].shape[2:]), list(out.shape[2:]))
            return out * counts.to(out)
        return run(*args, **kwargs)

    def call_function(self, target, args, kwargs):
        name = getattr(target, "__name__", str(target))
        return self._call(name, args, kwargs, lambda *a, **k: target(*a, **k))

    def call_method(self, target, args, kwargs):
        if target == "mean":
            return args[0].sum(*args[1:], **kwargs)
        return self._call(target, args, kwargs, lambda s, *a, **k: getattr(s, target)(*a, **k))


def fanout(snn: SpikingNetwork, input_shape: tuple[int, ...], source: str) -> tuple[Tensor, float]:
    """``(fanout [*one sample's shape], total)`` of ``source``: a neuron layer's or an
    accumulating operator's name, or :data:`INPUT` for the analog input; ``total`` is the
    sum of the fan-outs, i.e. the multiply-accumulates if every element is non-zero (for
    the input: the first layers' MACs). ``input_shape`` is one sample's shape."""
    return _count(snn, input_shape, source)[:2]


def accumulating_flops(snn: SpikingNetwork, input_shape: tuple[int, ...]) -> dict[str, float]:
    """FLOPs of one evaluation of each accumulating operator, for one sample."""
    return _count(snn, input_shape, INPUT)[2]


def _count(snn: SpikingNetwork, input_shape, source: str):
    interpreter = _FanoutInterpreter(snn.graph, source)
    with torch.enable_grad():
        interpreter.run(torch.zeros(1, *input_shape, dtype=snn.dtype, device=snn.device))
        if interpreter.z is None:
            raise KeyError(f"no neuron layer named {source!r}")
        if interpreter.macs.requires_grad:
            interpreter.macs.backward()
    grad = interpreter.z.grad
    counts = grad[0] if grad is not None else torch.zeros_like(interpreter.z[0])
    return counts.detach(), float(counts.sum()), interpreter.op_flops


def ann_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward of ``model`` on one sample (2 per multiply-accumulate)."""
    param = next(model.parameters())
    x = torch.zeros(1, *input_shape, dtype=param.dtype, device=param.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return int(counter.get_total_flops())


@dataclass
class EnergyConstants:
    """Joules per operation: 77 fJ per synaptic operation (the ROLLS chip, as the paper
    uses) and 12.5 pJ per FLOP."""

    joules_per_sop: float = 77e-15
    joules_per_flop: float = 12.5e-12

    def __post_init__(self):
        positive("joules_per_sop", self.joules_per_sop)
        positive("joules_per_flop", self.joules_per_flop)


class EnergyMeter(LayerSums):
    """Counts SOPs per neuron layer and step during :func:`spikezip.snn.measure_snn`
    (:attr:`totals`, summed over samples), and the FLOPs of graded spikes and
    accumulating operators (:attr:`flops`).

    After the measurement, :meth:`result` gives the energy per inference (averaged over
    samples) at every T. Input shape: one sample's, e.g. ``(1, 28, 28)``.
    """

    follows_rows = True  # sums over the samples still simulated (settled ones add nothing)

    def __init__(
        self,
        snn: SpikingNetwork,
        input_shape: tuple[int, ...],
        timesteps: int,
        constants: EnergyConstants | None = None,
    ):
        super().__init__(snn, timesteps)
        self.snn = snn
        self.constants = constants or EnergyConstants()
        self.operators = {n: m for n, m in snn.graph.named_modules() if isinstance(m, Accumulating)}
        self.fanouts = {
            name: fanout(snn, input_shape, name)[0] for name in [*snn.neurons, *self.operators]
        }
        _, self.input_macs, self.op_flops = _count(snn, input_shape, INPUT)
        self.graded = {n for n, m in self.neurons.items() if getattr(m, "graded", False)}
        # FLOPs per step: graded neuron layers' multiply-accumulates, accumulating operators'
        # own work and the multiply-accumulates their outputs drive.
        self.flops = {
            name: torch.zeros(timesteps, dtype=torch.float64)
            for name in [*sorted(self.graded), *self.operators]
        }

    def begin_batch(self, x: Tensor, activations: dict[str, Tensor]) -> None:
        super().begin_batch(x, activations)
        self._batch = len(x)
        self.flops = {k: v.to(x.device) for k, v in self.flops.items()}
        self._device_fanouts = {k: v.to(x.device, x.dtype) for k, v in self.fanouts.items()}

    def on_step(self, t: int, snn: SpikingNetwork) -> None:
        if t > self.timesteps or snn.resting:  # at rest no neuron fires, no operator acts
            return
        for name, neuron in self.neurons.items():
            # |spike| counts +1 and -1 alike: bipolar spikes never cancel in the count.
            # Summed in float64: integer counts stay exact however the data are split.
            # Per position, the spikes over the samples (no batch-sized temporary), then
            # the fan-outs: integer counts, exact in float32 while batch x fan-out < 2**24,
            # summed in float64.
            fan = self._device_fanouts[name]
            spikes = torch.linalg.vector_norm(neuron.spike.reshape(-1, *fan.shape), 1, dim=0)
            events = (spikes * fan).sum(dtype=torch.float64)
            if name in self.graded:
                self.flops[name][t - 1] += 2 * events  # a multiply-accumulate per synapse
            else:
                self.totals[name][t - 1] += events
        for name, op in self.operators.items():
            if not op.changed or op.last is None:
                continue
            rows = op.changed_rows
            # Without a batch dimension common to its operands an operator is counted for
            # every sample of the batch, as it computes them all when simulated whole
            # (and so whether settled samples have left the simulation or not).
            samples = self._batch if rows is None else rows.sum(dtype=torch.float64)
            fan = self._device_fanouts[name]
            # Per position, the samples whose output is non-zero (ord 0: a count).
            nonzero = torch.linalg.vector_norm(op.last.reshape(-1, *fan.shape), 0, dim=0)
            driven = (nonzero * fan).sum(dtype=torch.float64)
            self.flops[name][t - 1] += samples * self.op_flops[name] + 2 * driven

    def all_reduce(self, reduce_sum: ReduceSum) -> None:
        """Sum SOPs, samples and FLOPs over processes in one collective, in place."""
        sums = sum_across([*self.totals.values(), self.samples, *self.flops.values()], reduce_sum)
        n = len(self.totals)
        self.totals = dict(zip(self.totals, sums[:n], strict=True))
        self.samples = sums[n]
        self.flops = dict(zip(self.flops, sums[n + 1 :], strict=True))

    def result(self, ann_flops_per_inference: int) -> dict:
        """The ``energy`` entry of ``snn_eval.json``: per-T cumulative SOPs, FLOPs and
        joules, and the share of the work done by accumulating operators."""
        sops = self.per_sample()
        sop = torch.cumsum(sum(sops.values()), 0)
        released = [self.snn.release.released_steps(t) for t in range(1, self.timesteps + 1)]
        first_flops = 2 * self.input_macs * torch.tensor(released, dtype=torch.float64)
        samples = max(float(self.samples), 1.0)
        per_op = {name: v.cpu() / samples for name, v in self.flops.items()}
        zero = torch.zeros(self.timesteps, dtype=torch.float64)
        graded = torch.cumsum(sum((per_op[n] for n in self.graded), zero), 0)
        dense = torch.cumsum(sum((per_op[n] for n in self.operators), zero), 0)
        c = self.constants
        joules = sop * c.joules_per_sop + (first_flops + graded + dense) * c.joules_per_flop
        work = float(sop[-1] + first_flops[-1] + graded[-1] + dense[-1]) if len(sop) else 0.0
        return {
            "joules_per_sop": c.joules_per_sop,
            "joules_per_flop": c.joules_per_flop,
            "sop": sop.tolist(),
            "first_layer_flops": first_flops.tolist(),
            "graded_flops": graded.tolist(),
            "accumulating_flops": dense.tolist(),
            "accumulating_share": float(dense[-1]) / work if work else 0.0,
            "snn_joules": joules.tolist(),
            "ann_flops": ann_flops_per_inference,
            "ann_joules": ann_flops_per_inference * c.joules_per_flop,
            "sop_per_layer": {name: float(v.sum()) for name, v in sops.items()},
            "flops_per_layer": {name: float(v.sum()) for name, v in per_op.items()},
        }
