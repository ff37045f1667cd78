"""The baselines: QCFS and classic rate-coded conversion, in SpikeZIP's simulator."""

import numpy as np
import pytest
import torch
from conftest import calibrate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spikezip.baselines.qcfs import QCFS, to_if_snn, to_qcfs
from spikezip.baselines.rate import calibrate_thresholds, to_rate_snn
from spikezip.models import small_cnn
from spikezip.snn import IFNeuron, measure_snn
from spikezip.tasks import Classification


def test_qcfs_activation_is_the_clip_floor_shift_formula():
    act = QCFS(levels=4, threshold=2.0)  # step lambda / L = 0.5
    x = torch.tensor([-1.0, 0.0, 0.24, 0.25, 0.26, 0.74, 0.75, 1.6, 1.75, 1.9, 2.0, 5.0])
    # h(x) = 0.5 * clip(floor(x / 0.5 + 1/2), 0, 4): the shift rounds half up, the clip caps
    expected = [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0]
    assert act(x).tolist() == expected
    lam, levels = 2.0, 4
    formula = lam / levels * torch.clamp(torch.floor(x * levels / lam + 0.5), 0, levels)
    assert torch.equal(act(x), formula)


def test_qcfs_learns_its_threshold_and_passes_gradients_inside_the_clip():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([0.6, 1.3, 5.0, -1.0], requires_grad=True)  # levels 1, 3; clipped
    act(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]  # straight through the floor
    assert act.threshold.grad is not None and act.threshold.grad.item() != 0
    fresh = QCFS(levels=4).train()
    fresh(torch.tensor([0.5, -0.5, 1.5, 2.5]))
    # Data init: lambda / L is LSQ's initial step 2 mean|x| / sqrt(L) = 1.25.
    assert bool(fresh.initialized) and fresh.threshold.item() == pytest.approx(4 * 1.25)


def test_to_qcfs_morphs_relus_and_max_pools():
    qcfs = to_qcfs(small_cnn(width=0.25), levels=8)
    acts = [m for m in qcfs.modules() if isinstance(m, QCFS)]
    assert len(acts) == 3 and all(a.levels == 8 for a in acts)
    assert not any(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in qcfs.modules())


def _trained_qcfs(x: torch.Tensor, levels: int = 16) -> nn.Module:
    torch.manual_seed(0)
    qcfs = to_qcfs(small_cnn(width=0.25), levels=levels)
    calibrate(qcfs, x)  # batch-norm statistics from the data
    qcfs.train()
    qcfs(x.double())  # thresholds from the data
    return qcfs.eval()


def test_qcfs_snn_rate_approaches_the_qcfs_ann_as_t_grows():
    torch.manual_seed(1)
    x = torch.randn(32, 1, 28, 28, dtype=torch.float64)
    qcfs = _trained_qcfs(x)
    snn = to_if_snn(qcfs).double()
    neurons = snn.neurons.values()
    assert all(isinstance(n, IFNeuron) and n.start == 0.5 for n in neurons)
    with torch.no_grad():
        expected = qcfs(x)
    outputs = snn.simulate(x, 512)  # [T, B, classes], accumulated
    rates = snn.release.estimates(outputs)

    def error(t: int) -> float:
        return float((rates[t - 1] - expected).abs().sum() / expected.abs().sum())

    # The rate converges to the clipped, not the quantized, network: the distance falls
    # with T to a floor set by L (about 20% of the logits here, at L = 16), not to zero.
    assert error(128) < 0.5 * error(8) and error(512) <= error(16)
    agreement = float((rates[-1].argmax(-1) == expected.argmax(-1)).double().mean())
    assert agreement >= 0.9


def test_qcfs_measurement_reports_the_distance_at_every_t():
    torch.manual_seed(2)
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64)
    qcfs = _trained_qcfs(x)
    y = torch.randint(0, 10, (16,))
    snn = to_if_snn(qcfs).double()
    totals = measure_snn(snn, qcfs, [(x, y)], timesteps=64, progress=False, task=Classification())
    errors = totals.output_error_per_t
    assert len(errors) == 64 and errors[-1] < errors[3]
    assert totals.settled == 0 and totals.agreement_per_t[-1] == totals.agreement


def test_rate_thresholds_are_the_percentile_of_each_relu():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU())
    x = torch.randn(200, 1, 4, 4)
    loader = DataLoader(TensorDataset(x, torch.zeros(200)), batch_size=50)
    thresholds = calibrate_thresholds(net, loader, percentile=99.0, limit_batches=3)
    with torch.no_grad():
        first = net[2](net[1](net[0](x[:150])))
        second = net[4](net[3](first))
    # Of the non-zero activations (a ReLU's zeros would pull the percentile down).
    for name, out in (("2", first.numpy()), ("4", second.numpy())):
        assert (out == 0).mean() > 0.2
        assert thresholds[name] == pytest.approx(np.percentile(out[out > 0], 99.0), rel=1e-5)
        assert thresholds[name] > np.percentile(out, 99.0)


def test_rate_snn_approximates_the_relu_network():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).double()
    x = torch.rand(64, 1, 4, 4, dtype=torch.float64)
    loader = DataLoader(TensorDataset(x, torch.zeros(64)), batch_size=64)
    thresholds = calibrate_thresholds(net, loader, percentile=100.0)  # nothing clipped
    snn = to_rate_snn(net, thresholds, start=0.5).double()
    assert [n.threshold.item() for n in snn.neurons.values()] == [pytest.approx(thresholds["2"])]
    rates = snn.release.estimates(snn.simulate(x, 512))
    with torch.no_grad():
        expected = net(x)
    error = float((rates[-1] - expected).abs().max())
    # One hidden layer: the rate is within Vthr / 2T of the activation, then linear.
    bound = thresholds["2"] / (2 * 512) * float(net[3].weight.detach().abs().sum(1).max())
    assert error <= bound + 1e-12


def test_a_saved_rate_snn_keeps_its_thresholds_and_start_potential(tmp_path):
    from spikezip.artifacts import load_snn, save_snn
    from spikezip.methods import MethodConfig, MethodName, method_of

    torch.manual_seed(5)
    arch = {"name": "small", "num_classes": 10, "width": 0.25}
    settings = MethodConfig(name=MethodName.rate, start=0.5, percentile=99.0)
    ann = method_of(settings).rebuild(arch, 8).eval()
    x = torch.rand(16, 1, 28, 28)
    calibration = DataLoader(TensorDataset(x, torch.zeros(16)), batch_size=8)
    snn = method_of(settings).convert(ann, calibration=calibration, settings=settings)
    meta = {"arch": arch, "levels": 8, "input_shape": [1, 28, 28], "method": settings}
    loaded, _, metadata = load_snn(save_snn(snn, ann, tmp_path / "snn.pt", meta))
    assert metadata["method"]["start"] == 0.5
    assert [n.start for n in loaded.neurons.values()] == [0.5] * len(snn.neurons)
    thresholds = [float(n.threshold) for n in loaded.neurons.values()]
    assert (
        thresholds == [float(n.threshold) for n in snn.neurons.values()] and 1.0 not in thresholds
    )
    assert torch.equal(loaded.simulate(x, 6), snn.simulate(x, 6))
