"""Energy: fan-out, SOP counting, first-layer FLOPs; feature-map distances."""

import pytest
import torch
from conftest import realistic_qann
from torch import nn

from spikezip.models import resnet20, small_cnn
from spikezip.quant import QReLU
from spikezip.snn import measure_snn, to_snn
from spikezip.snn.energy import INPUT, EnergyMeter, ann_flops, fanout
from spikezip.snn.feature_maps import FeatureMapMeter
from spikezip.tasks import Classification


def _net():
    # input [1, 4, 4] -> conv 3x3 pad 1 (2 ch) -> Q-ReLU -> avg-pool 2 -> flatten -> fc 3
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), QReLU(2, 0.5), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(8, 3),
    )  # fmt: skip
    return net.double().eval()


def test_fanout_through_pooling_to_a_linear_layer():
    snn = to_snn(_net()).double()
    counts, macs = fanout(snn, (1, 4, 4), "1")
    # Each neuron sits in one pooling window; the pooled value drives the 3 outputs of fc.
    assert counts.shape == (2, 4, 4)
    assert torch.equal(counts, torch.full((2, 4, 4), 3.0, dtype=counts.dtype))
    assert macs == 32 * 3


class _Functional(nn.Module):
    def __init__(self, pool: str):
        super().__init__()
        self.conv, self.act, self.fc, self.pool = (
            nn.Conv2d(1, 2, 3, padding=1),
            QReLU(2, 0.5),
            nn.Linear(2, 3),
            pool,
        )

    def forward(self, x):
        h = self.act(self.conv(x)) * 0.5  # scaling by a constant keeps one event per value
        if self.pool == "mean":
            h = h.mean((2, 3))
        else:
            h = torch.nn.functional.avg_pool2d(h, 4).flatten(1)
        return self.fc(h)


@pytest.mark.parametrize("pool", ["mean", "avg_pool2d"])
def test_fanout_through_functional_pooling_and_scaling(pool):
    snn = to_snn(_Functional(pool).double().eval()).double()
    counts, _ = fanout(snn, (1, 4, 4), "act")
    assert torch.equal(counts, torch.full((2, 4, 4), 3.0, dtype=counts.dtype))


def test_fanout_of_the_input_counts_conv_macs():
    snn = to_snn(_net()).double()
    counts, macs = fanout(snn, (1, 4, 4), INPUT)
    # 3x3 conv with padding 1: a corner pixel is used by 4 output positions, the centre by
    # 9, for each of the 2 output channels.
    assert counts[0, 0, 0] == 4 * 2 and counts[0, 1, 1] == 9 * 2 and counts[0, 0, 1] == 6 * 2
    assert macs == 2 * (4 * 4 + 8 * 6 + 4 * 9)  # 2 channels x the taps that hit the image


def test_fanout_follows_both_branches_of_a_residual():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    snn = to_snn(realistic_qann(resnet20(width=0.25, rcr=True), 4, x)).double()
    # With RCR the neuron's output joins the identity path: it feeds the next block's conv1
    # (3x3, 4 channels) and, through that block's shortcut, the conv1 after it too.
    counts, _ = fanout(snn, (3, 32, 32), "layer1.0.relu2")
    assert counts[:, 5, 5].min() >= 2 * 9 * 4
    last, _ = fanout(snn, (3, 32, 32), "layer1.2.relu1")  # inside a block: only its conv2
    assert last[:, 5, 5].max() == 9 * 4


def test_energy_counts_every_spike_of_either_sign():
    torch.manual_seed(1)
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64)
    qann = realistic_qann(small_cnn(width=0.25), 4, x)
    snn = to_snn(qann).double()
    meter = EnergyMeter(snn, (1, 28, 28), timesteps=30)
    manual = torch.zeros(30, dtype=torch.float64)

    def count(t, net):
        for name, neuron in net.neurons.items():
            manual[t - 1] += (neuron.spike != 0).double().mul(meter.fanouts[name]).sum()

    meter.begin_batch(x, {})
    snn.run(x, 30, on_step=lambda t, net: (meter.on_step(t, net), count(t, net)))
    energy = meter.result(ann_flops(qann, (1, 28, 28)))
    expected = torch.cumsum(manual, 0) / 16
    torch.testing.assert_close(torch.tensor(energy["sop"], dtype=torch.float64), expected)
    assert energy["sop"][-1] > 0
    # The analog first layer: 2 FLOPs per MAC on each of the n release steps, then nothing.
    conv_macs = 28 * 28 * 8 * 9 - 8 * (4 * 28 * 3 - 4)  # minus the padded taps
    assert energy["first_layer_flops"][3] == energy["first_layer_flops"][-1] == 2 * conv_macs * 4
    assert energy["ann_flops"] > 2 * conv_macs
    assert energy["snn_joules"][-1] == pytest.approx(
        energy["sop"][-1] * 77e-15 + energy["first_layer_flops"][-1] * 12.5e-12
    )


def test_feature_map_distance_reaches_zero_at_equilibrium():
    torch.manual_seed(2)
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    qann = realistic_qann(small_cnn(width=0.25), 4, x)
    snn = to_snn(qann).double()
    meter = FeatureMapMeter(snn, timesteps=30)
    result = measure_snn(
        snn, qann, [(x, y)], timesteps=30, progress=False, meters=[meter], task=Classification()
    )
    distances = meter.result()
    assert set(distances) == set(snn.neurons)
    for curve in distances.values():
        assert curve[0] > 0 and curve[-1] == 0.0
    assert result.agreement == 1.0


class _SizeArithmetic(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.act, self.fc = (
            nn.Conv2d(1, 2, 3, padding=1),
            QReLU(2, 0.5),
            nn.Linear(32, 3),
        )

    def forward(self, x):
        h = self.act(self.conv(x))
        return self.fc(h.reshape(h.size(0), h.size(1) * 16))  # sizes multiplied in the graph


def test_fanout_through_arithmetic_on_sizes():
    snn = to_snn(_SizeArithmetic().double().eval()).double()
    counts, macs = fanout(snn, (1, 4, 4), "act")
    assert torch.equal(counts, torch.full((2, 4, 4), 3.0, dtype=counts.dtype)) and macs == 96
