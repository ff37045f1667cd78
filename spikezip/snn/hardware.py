"""What a chip must hold to run an SNN: per neuron layer the neurons, synapses, register
widths (spike tracer, membrane) and spike traffic; for the network, memory and ``T_eq``
(``hardware.json``).

Bounds and measurements are kept apart. A tracer's *bounds* ``[S_min, S_max]`` are the
neuron's definition and give the bits it needs whatever the input; its *measured* range
and the membrane's are what the samples simulated reached. The membrane is measured after
integration and before firing (``V + x``, the largest value its register holds), in units
of the threshold; an integer SNN (``pet.weight_bits``) holds it as an integer, and the
bits it needs are those of the integer range it reached.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, fx, nn

from spikezip.quant.integer import bits_for
from spikezip.snn.energy import EnergyMeter, fanout
from spikezip.snn.layers import ReleasedConstant, SpikingAffine
from spikezip.snn.measure import ReduceSum, sum_across
from spikezip.snn.network import SpikingNetwork
from spikezip.snn.neuron import STBIF, SpikingNeuron
from spikezip.snn.operators import Accumulating


def _affine_nodes(gm: fx.GraphModule) -> dict[str, nn.Module]:
    return {
        n.name: gm.get_submodule(n.target)
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), SpikingAffine)
    }


def _connections(layer: nn.Module, x: Tensor) -> float:
    """Synapses of an affine layer on input ``x`` (one sample): its multiply-accumulates."""
    ones = torch.ones_like(layer.weight)
    x = torch.ones_like(x)
    out = torch.nn.functional.linear(x, ones) if isinstance(layer, nn.Linear) else None
    if out is None:
        out = layer._conv_forward(x, ones, None)
    return float(out.sum())


def synapses_in(
    snn: SpikingNetwork, input_shape: tuple[int, ...]
) -> tuple[dict[str, float], float]:
    """Per neuron layer, the synapses that end on it (the multiply-accumulates of the
    conv / linear layers whose outputs reach it before any other neuron or operator), and
    the synapses of the whole network (every conv / linear layer's)."""
    gm = snn.graph
    affine = _affine_nodes(gm)
    shapes = snn.node_shapes(input_shape)
    nodes = {n.name: n for n in gm.graph.nodes}
    inputs = {
        name: torch.zeros(1, *shapes[nodes[name].args[0].name], dtype=snn.dtype, device=snn.device)
        for name in affine
        if nodes[name].args[0].name in shapes
    }
    macs = {name: _connections(affine[name].layer, x) for name, x in inputs.items()}
    result = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), SpikingNeuron):
            continue
        seen, stack, total = set(), list(node.all_input_nodes), 0.0
        while stack:
            n = stack.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.name in affine:
                total += macs.get(n.name, 0.0)
                continue
            if n.op == "call_module" and isinstance(
                gm.get_submodule(n.target), (SpikingNeuron, Accumulating)
            ):
                continue
            stack.extend(n.all_input_nodes)
        result[node.target] = total
    return result, sum(macs.values())


class HardwareMeter:
    """Measures, during :func:`spikezip.snn.measure_snn`, what each neuron layer's
    registers and wires carry: the membrane before firing (in units of the threshold, and
    as integers for an integer SNN), the tracer's range, spikes of each sign, and the
    largest fraction of a sample's neurons that fire in one step. Settled samples add
    nothing, so it follows samples leaving the batch."""

    needs_activations = False
    follows_rows = True

    # Columns of the tables the meter keeps, one row per neuron layer.
    LOWS = ("membrane", "integer", "tracer")  # least values reached
    HIGHS = ("membrane", "integer", "tracer", "active")  # largest values reached
    SUMS = ("fired", "net")  # spikes of either sign, and their signed sum

    def __init__(self, snn: SpikingNetwork):
        self.snn = snn
        self.neurons = snn.neurons
        self.names = list(self.neurons)
        self.integer = getattr(snn, "weight_bits", None) is not None
        rows = len(self.names)
        self.lows = torch.full((rows, len(self.LOWS)), math.inf, dtype=torch.float64)
        self.highs = torch.full((rows, len(self.HIGHS)), -math.inf, dtype=torch.float64)
        self.sums = torch.zeros(rows, len(self.SUMS), dtype=torch.float64)
        self.samples = torch.zeros((), dtype=torch.float64)

    def begin_batch(self, x: Tensor, activations: dict[str, Tensor]) -> None:
        self.samples += len(x)
        self.lows, self.highs, self.sums = (
            t.to(x.device) for t in (self.lows, self.highs, self.sums)
        )

    @torch.no_grad()
    def on_step(self, t: int, snn: SpikingNetwork) -> None:
        if snn.resting:  # the state at rest, measured on the step it settled
            return
        lows, highs, sums, where = [], [], [], []
        for i, name in enumerate(self.names):
            neuron = self.neurons[name]
            spike, v = neuron.spike, neuron.v
            if spike is None or v is None or not spike.numel():
                continue
            before = torch.addcmul(v, spike, neuron.threshold)  # V + x, before the spike
            integer = torch.aminmax(before) if self.integer else None
            membrane = torch.aminmax(before.div_(neuron.threshold))
            if integer is None:
                integer = membrane
            tracer = [t.double() for t in torch.aminmax(neuron.count)]  # an int in an integer SNN
            rows = spike.reshape(spike.shape[0], -1)
            per_row = torch.linalg.vector_norm(rows, 1, dim=1)  # neurons firing, per sample
            lows.append(torch.stack([membrane[0], integer[0], tracer[0]]).double())
            highs.append(
                torch.stack(
                    [membrane[1], integer[1], tracer[1], per_row.max() / rows.shape[1]]
                ).double()
            )
            sums.append(
                torch.stack([per_row.sum(dtype=torch.float64), rows.sum(dtype=torch.float64)])
            )
            where.append(i)
        if not where:
            return
        index = torch.tensor(where, device=self.lows.device)
        self.lows[index] = torch.minimum(self.lows[index], torch.stack(lows).double())
        self.highs[index] = torch.maximum(self.highs[index], torch.stack(highs).double())
        self.sums[index] += torch.stack(sums)

    def all_reduce(self, reduce_sum: ReduceSum) -> None:
        """Combine the processes' measurements in place: counts are summed; the extremes
        are gathered through the sum too (each process fills its own row of a
        ``[world, ...]`` table of zeros), then the least and largest taken."""
        ones = torch.ones((), dtype=torch.float64)
        world = int(sum_across([ones], reduce_sum)[0])
        self.sums, self.samples = sum_across([self.sums, self.samples], reduce_sum)
        if world == 1:
            return
        rank = torch.distributed.get_rank()
        big = 1e300  # inf does not survive a sum with the other rows' zeros
        for name in ("lows", "highs"):
            table = torch.zeros(world, *getattr(self, name).shape, dtype=torch.float64)
            table[rank] = getattr(self, name).cpu().clamp(-big, big)
            (table,) = sum_across([table], reduce_sum)
            value = table.amin(0) if name == "lows" else table.amax(0)
            setattr(self, name, torch.where(value.abs() >= big, value.sign() * math.inf, value))

    def result(
        self,
        input_shape: tuple[int, ...],
        t_eq_counts: dict[str, int],
        settled: int,
        sop_per_layer: dict[str, float] | None = None,
        inputs: str = "",
    ) -> dict:
        """The content of ``hardware.json`` (see ``docs/hardware.md``)."""
        samples = max(float(self.samples), 1.0)
        lows, highs, sums = self.lows.cpu(), self.highs.cpu(), self.sums.cpu()
        synapses, all_synapses = synapses_in(self.snn, input_shape)
        weight_bits = getattr(self.snn, "weight_bits", None)
        float_bits = torch.finfo(self.snn.dtype).bits
        layers = []
        for i, name in enumerate(self.names):
            neuron = self.neurons[name]
            count, fan_total = fanout(self.snn, input_shape, name)
            neurons = count.numel()
            tracer = None
            if isinstance(neuron, STBIF):  # an IF neuron has no tracer: it only counts
                s_min, s_max = neuron.tracer_min, neuron.levels
                tracer = {"min": s_min, "max": s_max, "bits": bits_for(s_min, s_max)}
                tracer["signed"] = s_min < 0
            low, high = lows[i], highs[i]
            measured = bool(high[2] >= low[2])
            fired, net = sums[i].tolist()
            # The tracer starts at 0: its register holds 0 whatever was measured after.
            s_low, s_high = 0, 0
            if measured:
                s_low, s_high = min(int(low[2]), 0), max(int(high[2]), 0)
            entry = {
                "name": name,
                "neuron": type(neuron).__name__,
                "neurons": neurons,
                "synapses_in": synapses.get(name, 0.0),
                "synapses_out": fan_total,
                "tracer": tracer,
                "tracer_measured": {"min": s_low, "max": s_high, "bits": bits_for(s_low, s_high)}
                if measured
                else None,
                "membrane": {
                    "min": float(low[0]),
                    "max": float(high[0]),
                    "unit": "threshold",
                }
                if measured
                else None,
                "membrane_integer": None,
                "membrane_bits": None,
                "spikes_per_neuron": {
                    "positive": (fired + net) / 2 / samples / neurons,
                    "negative": (fired - net) / 2 / samples / neurons,
                },
                "max_active_fraction": float(high[3]) if measured else 0.0,
                "sops": (sop_per_layer or {}).get(name),
            }
            if self.integer and measured:
                v_low, v_high = int(low[1]), int(high[1])
                entry["membrane_integer"] = {"min": v_low, "max": v_high}
                entry["membrane_bits"] = bits_for(min(v_low, 0), v_high)
            layers.append(entry)
        weights = biases = 0
        weight_memory = 0.0  # bits
        bias_bits = getattr(self.snn, "bias_bits", None) or float_bits
        for module in self.snn.graph.modules():
            if isinstance(module, SpikingAffine):
                w = module.layer.weight
                weights += w.numel()
                biases += module.bias.numel()
                # An integer layer at the bits its weights take (a shortcut's integer
                # multiples take more than weight_bits); a float one at its dtype's.
                layer_bits = float_bits
                if self.integer and w.numel():
                    layer_bits = bits_for(min(int(w.min()), 0), max(int(w.max()), 0))
                weight_memory += w.numel() * layer_bits + module.bias.numel() * bias_bits
        for node in self.snn.graph.graph.nodes:  # released constants: a bias map, ...
            if node.op == "call_module" and isinstance(
                self.snn.graph.get_submodule(node.target), ReleasedConstant
            ):
                constant = node.args[0]
                if isinstance(constant, fx.Node) and constant.op == "get_attr":
                    values = getattr(self.snn.graph, constant.target)
                    biases += values.numel()
                    weight_memory += values.numel() * bias_bits
        state_bits = 0
        for entry in layers:
            membrane = entry["membrane_bits"] or float_bits
            tracer = entry["tracer"]["bits"] if entry["tracer"] else 0
            state_bits += entry["neurons"] * (membrane + tracer)
        t_eq = {int(k): int(n) for k, n in t_eq_counts.items()}
        total = sum(t_eq.values())
        return {
            "inputs": inputs,
            "samples": int(self.samples),
            "integer": self.integer,
            "weight_bits": weight_bits or float_bits,
            "layers": layers,
            "network": {
                "neurons": sum(e["neurons"] for e in layers),
                "synapses": all_synapses,
                "weights": weights,
                "weight_memory_bytes": weight_memory / 8,
                "state_memory_bytes": state_bits / 8,
                "tracer_bits_max": max(
                    (e["tracer"]["bits"] for e in layers if e["tracer"]), default=None
                ),
                "t_eq": {
                    "counts": {str(k): n for k, n in sorted(t_eq.items())},
                    "settled": settled,
                    "mean": sum(k * n for k, n in t_eq.items()) / total if total else None,
                    "max": max(t_eq) if t_eq and settled == int(self.samples) else None,
                },
            },
        }


def format_hardware(report: dict) -> str:
    """``hardware.json`` as a table for the log."""
    rows = [
        f"{'neuron layer':<28} {'neurons':>8} {'syn in':>10} {'tracer':>12} {'measured':>9} "
        f"{'membrane/Vthr':>16} {'mem bits':>8} {'spk+/n':>7} {'spk-/n':>7} {'active':>7}"
    ]
    for e in report["layers"]:
        tracer = e["tracer"]
        bounds = f"[{tracer['min']},{tracer['max']}] {tracer['bits']}b" if tracer else "none"
        measured = f"{e['tracer_measured']['bits']}b" if e["tracer_measured"] is not None else "-"
        membrane = (
            f"[{e['membrane']['min']:.2f},{e['membrane']['max']:.2f}]" if e["membrane"] else "-"
        )
        bits = str(e["membrane_bits"]) if e["membrane_bits"] is not None else "float"
        rows.append(
            f"{e['name']:<28} {e['neurons']:>8} {e['synapses_in']:>10.3g} {bounds:>12} "
            f"{measured:>9} {membrane:>16} {bits:>8} "
            f"{e['spikes_per_neuron']['positive']:>7.3f} "
            f"{e['spikes_per_neuron']['negative']:>7.3f} {e['max_active_fraction']:>7.1%}"
        )
    net = report["network"]
    rows.append(
        f"network: {net['neurons']} neurons, {net['synapses']:.4g} synapses, {net['weights']} "
        f"weights ({net['weight_memory_bytes'] / 1024:.1f} KiB at {report['weight_bits']} bits), "
        f"state {net['state_memory_bytes'] / 1024:.1f} KiB; T_eq mean "
        f"{net['t_eq']['mean'] if net['t_eq']['mean'] is None else round(net['t_eq']['mean'], 2)}"
        f", max {net['t_eq']['max']}"
    )
    return "\n".join(rows)


@torch.no_grad()
def measure_hardware(
    snn: SpikingNetwork,
    x: Tensor,
    input_shape: tuple[int, ...],
    max_timesteps: int,
    inputs: str,
) -> dict:
    """``hardware.json`` of ``snn`` from one simulation of the inputs ``x`` (what
    ``convert.py`` writes from its proof's samples; an evaluation measures the whole set)."""
    x = x.to(device=snn.device, dtype=snn.dtype)
    meter, energy = HardwareMeter(snn), EnergyMeter(snn, input_shape, max_timesteps)
    for m in (meter, energy):
        m.begin_batch(x, {})

    def on_step(t: int, net: SpikingNetwork) -> None:
        if not net.resting:  # at rest nothing fires: no register changes, no SOP
            meter.on_step(t, net)
            energy.on_step(t, net)

    sim = snn.run(x, max_timesteps, on_step=on_step, drop_settled=True, keep=1)
    settled = sim.t_eq[sim.t_eq >= 0]
    counts = torch.bincount(settled.cpu(), minlength=1) if settled.numel() else torch.zeros(0)
    t_eq = {str(t): int(n) for t, n in enumerate(counts.tolist()) if n}
    sops = {name: float(v.sum()) for name, v in energy.per_sample().items()}
    return meter.result(input_shape, t_eq, int(settled.numel()), sops, inputs)
