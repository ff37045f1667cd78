"""Plug-in points: another neuron and input regime, the task, reducible measurements."""

import dataclasses

import pytest
import torch
from conftest import realistic_qann
from torch import nn

from spikezip.models import small_cnn
from spikezip.quant import QReLU
from spikezip.snn import (
    IFNeuron,
    NeuronRule,
    UnsupportedLayerError,
    check_equivalence,
    if_step,
    measure_snn,
    to_snn,
)
from spikezip.snn.energy import EnergyMeter, ann_flops
from spikezip.snn.feature_maps import FeatureMapMeter
from spikezip.tasks import Classification, ClassificationMeasurement


def test_if_step_resets_by_subtraction_and_fires_unsigned():
    thr = torch.tensor(1.0, dtype=torch.float64)
    v = torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64)  # V0 = thr / 2
    x = torch.tensor([0.2, 0.5, 1.7, -3.0], dtype=torch.float64)
    spike, v_next = if_step(v, x, thr)
    assert spike.tolist() == [0.0, 1.0, 1.0, 0.0]  # never -1, at most one spike per step
    torch.testing.assert_close(v_next, torch.tensor([0.7, 0.0, 1.2, -2.5], dtype=torch.float64))


def test_if_neuron_rate_is_a_rounded_clipped_relu():
    # Fed a constant input x for T steps from V0 = thr / 2, an IF neuron fires
    # floor(T x / thr + 1/2) times (for 0 <= x <= thr): the rate approaches x / thr.
    thr, steps = 0.5, 64
    neuron = IFNeuron(thr, start=0.5)
    x = torch.tensor([0.0, 0.1, 0.26, 0.5, 0.9, -0.3], dtype=torch.float64)
    for _ in range(steps):
        neuron(x)
    expected = torch.floor(steps * x.clamp(0, thr) / thr + 0.5).clamp(max=steps)
    assert torch.equal(neuron.count, expected)
    assert neuron.accumulated()[3].item() == pytest.approx(steps * thr)


def _if_from_qrelu(name: str, qrelu: QReLU) -> IFNeuron:
    # A rate-coded neuron for a Q-ReLU: threshold = its clip value n * s (as QCFS does).
    return IFNeuron(qrelu.scale.detach() * qrelu.levels, start=0.5)


IF_RULE = NeuronRule(QReLU, _if_from_qrelu)


def test_another_neuron_and_a_constant_input_run_through_every_shared_piece():
    torch.manual_seed(0)
    x = torch.randn(12, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (12,))
    qann = realistic_qann(small_cnn(width=0.25), 4, x)
    snn = to_snn(qann, "constant", neuron=IF_RULE).double()
    assert snn.release_steps is None and snn.release.divisor == 1
    assert all(isinstance(n, IFNeuron) for n in snn.neurons.values())

    # The simulator: a constant input never settles, so no sample has a T_eq.
    sim = snn.run(x, 16)
    assert (sim.t_eq == -1).all() and sim.outputs.shape == (16, 12, 10)

    # The per-T measurement with the energy and feature-map meters.
    energy = EnergyMeter(snn, (1, 28, 28), timesteps=16)
    maps = FeatureMapMeter(snn, timesteps=16)
    totals = measure_snn(
        snn,
        qann,
        [(x, y)],
        timesteps=16,
        max_timesteps=16,
        progress=False,
        meters=[energy, maps],
        task=Classification(),
    )
    assert totals.settled == 0 and totals.t_eq_max == -1 and totals.count == 12
    result = energy.result(ann_flops(qann, (1, 28, 28)))
    # The analog input is fed on every step, so the first layer costs FLOPs on every step.
    flops = result["first_layer_flops"]
    assert flops[15] == pytest.approx(16 * flops[0]) and result["sop"][-1] > 0
    # The rate estimate of every layer gets closer to the QANN's activation with T.
    for curve in maps.result().values():
        assert curve[-1] < curve[1]

    # The equivalence check reports, rather than claims, how far the rate code is. The
    # first neuron layer sees the same input z on every step: after T steps its rate
    # times Vthr = n s is within n s / 2T of clip(z, 0, n s), itself within s / 2 of the
    # Q-ReLU's rounded value.
    report = check_equivalence(qann, snn, x, max_timesteps=256)
    assert not report.equivalent and not report.reached_equilibrium
    first = qann.features[2]
    s, n = first.scale.item(), first.levels
    assert report.layers[0].name == "features.2"
    assert s / 4 < report.layers[0].max_abs_diff <= s / 2 + n * s / (2 * 256) + 1e-12


def test_measurements_of_parts_add_up_to_the_whole():
    torch.manual_seed(3)
    x = torch.randn(20, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (20,))
    qann = realistic_qann(small_cnn(width=0.25), 4, x)
    snn = to_snn(qann).double()

    def measure(batches):
        energy, maps = EnergyMeter(snn, (1, 28, 28), 12), FeatureMapMeter(snn, 12)
        totals = measure_snn(
            snn,
            qann,
            batches,
            timesteps=12,
            progress=False,
            meters=[energy, maps],
            ann=qann,
            task=Classification(),
        )
        return totals, energy, maps

    # The whole set in batches of 4; two "processes" holding 7 and 13 samples.
    whole, whole_energy, whole_maps = measure(
        [(x[i : i + 4], y[i : i + 4]) for i in range(0, 20, 4)]
    )
    first, first_energy, first_maps = measure([(x[:7], y[:7])])
    second, second_energy, second_maps = measure([(x[7:], y[7:])])

    def plus(tensors):  # a two-process sum, seen from the first process
        flat = torch.cat([t.double().flatten() for t in tensors])
        return lambda t: t + flat

    fields = [f.name for f in dataclasses.fields(ClassificationMeasurement) if f.name != "task"]
    first.all_reduce(plus([getattr(second, f) for f in fields]))
    for field in fields:  # counts: exactly the same, however the data were split
        if field == "output_error":  # a real-valued sum: equal up to rounding
            torch.testing.assert_close(first.output_error, whole.output_error)
        else:
            assert torch.equal(getattr(first, field), getattr(whole, field)), field
    assert first.count == 20 and first.ann_accuracy == first.qann_accuracy
    for meter, other, full in ((first_energy, second_energy, whole_energy),
                               (first_maps, second_maps, whole_maps)):  # fmt: skip
        meter.all_reduce(plus([*other.totals.values(), other.samples]))
        assert float(meter.samples) == 20
        for name, values in full.totals.items():  # float sums: equal up to rounding
            torch.testing.assert_close(meter.totals[name], values, rtol=1e-12, atol=1e-9)


def test_classification_task_scores_per_timestep():
    task = Classification(num_classes=3)
    outputs = torch.tensor(
        [[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]
    )  # [T=2, B=2, C=3]
    targets = torch.tensor([0, 1])
    assert task.correct(outputs, targets).tolist() == [2, 1]
    assert int(task.agree(outputs[1], outputs[0])) == 1
    metric = task.metric()
    metric.update(outputs[1], targets)
    assert float(metric.compute()) == 0.5
    with pytest.raises(ValueError, match="needs num_classes"):
        Classification().metric()


def test_an_activation_the_rule_does_not_know_is_refused_by_name():
    with pytest.raises(UnsupportedLayerError, match="GRU at '1' cannot be converted.*only QReLU"):
        to_snn(nn.Sequential(nn.Linear(2, 2), nn.GRU(2, 2), QReLU(2, 1.0)))
    with pytest.raises(UnsupportedLayerError, match="GELU at '1' cannot be converted.*rate-coded"):
        to_snn(nn.Sequential(nn.Linear(2, 2), nn.GELU(), QReLU(2, 1.0)), encoding="constant")


def test_an_snn_of_other_neurons_is_not_reloaded_as_st_bif(tmp_path):
    from spikezip.artifacts import CheckpointError, load_snn, save_snn
    from spikezip.quant import to_qann

    arch = {"name": "small", "num_classes": 10, "width": 0.25}
    qann = to_qann(small_cnn(num_classes=10, width=0.25), 2, scale=0.5)
    meta = {"arch": arch, "levels": 2, "input_shape": [1, 28, 28]}  # a SpikeZIP QANN's
    path = save_snn(to_snn(qann, "constant", neuron=IF_RULE), qann, tmp_path / "snn.pt", meta)
    with pytest.raises(CheckpointError, match=r"an SNN of \['IFNeuron'\] neurons, but its method"):
        load_snn(path)
