"""hardware.json: register widths, synapses, spikes and memory of an SNN."""

import pytest
import torch
from torch import nn

from spikezip.quant import QReLU
from spikezip.snn import measure_snn, to_snn
from spikezip.snn.hardware import HardwareMeter, bits_for, format_hardware, measure_hardware
from spikezip.tasks import Classification


@pytest.mark.parametrize(
    "low, high, bits",
    [(0, 0, 1), (0, 1, 1), (0, 8, 4), (0, 15, 4), (0, 16, 5), (-8, 8, 5), (-8, 7, 4),
     (-1, 0, 1), (-3, 100, 8), (-200, 3, 9), (5, 8, 4), (1000, 1001, 10), (4000, 4100, 13)],
)  # fmt: skip
def test_bits_for_a_range(low, high, bits):
    assert bits_for(low, high) == bits


def _two_layers() -> nn.Module:
    # x -> [x, -x] -> Q-ReLU(n=4, s=1) -> a + b -> Q-ReLU(n=4, s=2)
    net = nn.Sequential(
        nn.Linear(1, 2, bias=False), QReLU(4, 1.0), nn.Linear(2, 1, bias=False), QReLU(4, 2.0)
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
    return net.eval()


def test_a_hand_built_network_reports_its_registers():
    # Input 3 released as 0.75 on steps 1-4 (T_off = n = 4), V0 = Vthr / 2.
    # Neuron a (+0.75 per step): V + x = 1.25 (spike), 1.0 (spike), 0.75, 1.5 (spike),
    # then 0.5 at rest: tracer 0..3, membrane [0.5, 1.5] thresholds.
    # Neuron b (-0.75 per step, S = S_min = 0 so no negative spike): -0.25, -1, -1.75, -2.5.
    # Layer 2 (Vthr = 2, V0 = 1) gets a's spikes (1 each): V + x = 2 (spike), 1, 1, 2 (spike),
    # then 0: tracer 0..2, membrane [0, 1] thresholds, output 2 * 2 = 4.
    snn = to_snn(_two_layers()).double()
    report = measure_hardware(snn, torch.tensor([[3.0]], dtype=torch.float64), (1,), 64, "x=3")
    first, second = report["layers"]
    assert first["tracer"] == {"min": 0, "max": 4, "bits": 3, "signed": False}
    assert first["tracer_measured"] == {"min": 0, "max": 3, "bits": 2}
    assert first["membrane"] == {"min": -2.5, "max": 1.5, "unit": "threshold"}
    assert first["spikes_per_neuron"] == {"positive": 1.5, "negative": 0.0}
    assert first["max_active_fraction"] == 0.5  # one of two neurons in a step
    assert (first["neurons"], first["synapses_in"], first["synapses_out"]) == (2, 2.0, 2.0)
    assert second["tracer_measured"] == {"min": 0, "max": 2, "bits": 2}
    assert second["membrane"] == {"min": 0.0, "max": 1.0, "unit": "threshold"}
    assert second["spikes_per_neuron"]["positive"] == 2.0 and second["max_active_fraction"] == 1
    assert (second["neurons"], second["synapses_in"], second["synapses_out"]) == (1, 2.0, 0.0)
    assert first["sops"] == 3 * 1 and second["sops"] == 0  # a's 3 spikes, one synapse each
    net = report["network"]
    assert (net["neurons"], net["synapses"], net["weights"]) == (3, 4.0, 4)
    assert net["t_eq"] == {"counts": {"4": 1}, "settled": 1, "mean": 4.0, "max": 4}
    assert net["state_memory_bytes"] == 3 * (64 + 3) / 8  # float64 membranes, 3-bit tracers
    assert first["membrane_bits"] is None  # a float SNN: no integer register width
    assert "network: 3 neurons" in format_hardware(report)


def test_a_signed_tracer_needs_a_sign_bit():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), QReLU(8, 1.0, signed=True)).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    snn = to_snn(net.eval()).double()
    report = measure_hardware(snn, torch.tensor([[-5.0], [3.0]], dtype=torch.float64), (1,), 64,
                              "two inputs")  # fmt: skip
    (layer,) = report["layers"]
    assert layer["tracer"] == {"min": -8, "max": 8, "bits": 5, "signed": True}
    assert layer["tracer_measured"] == {"min": -5, "max": 3, "bits": 4}
    assert layer["spikes_per_neuron"] == {"positive": 1.5, "negative": 2.5}


def test_the_report_does_not_depend_on_batching_or_samples_leaving():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), QReLU(4, 0.3), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(12, 5), QReLU(4, 0.2, signed=True), nn.Linear(5, 3),
    ).double().eval()  # fmt: skip
    snn = to_snn(net).double()
    x, y = torch.randn(12, 1, 4, 4, dtype=torch.float64), torch.zeros(12, dtype=torch.long)
    reports = []
    for batch, drop in ((12, False), (5, True), (1, True)):
        meter = HardwareMeter(snn)
        batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, 12, batch)]
        totals = measure_snn(snn, net, batches, timesteps=8, task=Classification(),
                             meters=[meter], progress=False, drop_settled=drop)  # fmt: skip
        counts = {str(t): int(n) for t, n in enumerate(totals.t_eq_counts.tolist()) if n}
        reports.append(meter.result((1, 4, 4), counts, totals.settled))
    assert reports[0] == reports[1] == reports[2]
    assert reports[0]["samples"] == 12
