"""The simulator's backends and its bookkeeping: the pure neuron steps, the compiled
backend, settled samples leaving the batch, preallocated outputs, the equilibrium check
every k steps. Every fast path is checked against the eager reference, bit for bit."""

from __future__ import annotations

import pytest
import torch
from conftest import realistic_qann
from test_operators import _Attention
from torch import nn
from torch.utils._pytree import tree_flatten

from spikezip.models import resnet20, small_cnn
from spikezip.models.yolo import anchors_for, yolov3_tiny
from spikezip.quant import QReLU
from spikezip.settings import SettingError
from spikezip.snn import STBIF, IFNeuron, if_step, measure_snn, stbif_step, to_snn
from spikezip.snn.energy import EnergyMeter
from spikezip.snn.neuron import CompileError, NeuronState, if_transition, stbif_transition
from spikezip.tasks import Classification, ClassificationMeasurement


def _state(shape, gen, dtype, levels=4):
    v = torch.randn(shape, generator=gen, dtype=dtype)
    count = torch.randint(0, levels + 1, shape, generator=gen).to(dtype)
    return NeuronState(v, count, torch.zeros(shape, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_pure_steps_are_the_eager_steps_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(0)
    threshold = torch.tensor(0.37, dtype=dtype)
    for _ in range(5):
        state, x = _state((7, 3, 5), gen, dtype), torch.randn(7, 3, 5, generator=gen, dtype=dtype)
        out, nxt = stbif_transition(state, x, threshold, 0, 4)
        spike, v, count = stbif_step(state.v, state.count, x, threshold, 0, 4)
        assert torch.equal(nxt.spike, spike) and torch.equal(nxt.v, v)
        assert torch.equal(nxt.count, count) and torch.equal(out, spike * threshold)
        out, nxt = if_transition(state, x, threshold)
        spike, v = if_step(state.v, x, threshold)
        assert torch.equal(nxt.v, v) and torch.equal(nxt.count, state.count + spike)


def _demo(x):
    return realistic_qann(small_cnn(width=0.5), 8, x)


def _resnet(x):
    return realistic_qann(resnet20(num_classes=10, rcr=True, width=0.25), 4, x)


def _yolo(x):
    anchors = anchors_for("yolov3_tiny", "mnist_detection")
    return realistic_qann(yolov3_tiny(5, anchors, 1, width=0.125), 4, x)


NETWORKS = {
    "demo": (_demo, (1, 28, 28)),
    "resnet20_rcr": (_resnet, (3, 32, 32)),
    "yolov3_tiny": (_yolo, (1, 64, 64)),
}


def _same_simulation(a, b) -> None:
    for left, right in zip(tree_flatten(a.outputs)[0], tree_flatten(b.outputs)[0], strict=True):
        assert torch.equal(left, right)
    for left, right in zip(tree_flatten(a.final)[0], tree_flatten(b.final)[0], strict=True):
        assert torch.equal(left, right)
    assert torch.equal(a.t_eq, b.t_eq) and a.timesteps == b.timesteps
    if a.spike_counts is not None:
        assert a.spike_counts.keys() == b.spike_counts.keys()
        for name in a.spike_counts:
            assert torch.equal(a.spike_counts[name], b.spike_counts[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_compiled_backend_gives_the_eager_outputs_spikes_and_t_eq(name, dtype):
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    x = torch.randn(6, *shape, dtype=torch.float64) * 2
    qann = build(x).to(dtype)
    eager = to_snn(qann).to(dtype)
    compiled = to_snn(qann, backend="compiled").to(dtype)
    assert compiled.backend == "compiled" and all(n.compiled for n in compiled.neurons.values())
    x = x.to(dtype)
    reference = eager.run(x, 40, record_spikes=True)
    assert bool(reference.at_equilibrium.any())  # the check sees settled samples
    _same_simulation(reference, compiled.run(x, 40, record_spikes=True))
    _same_simulation(eager.run(x, 40, drop_settled=True), compiled.run(x, 40, drop_settled=True))
    # Neurons are recompiled for no batch size: a batch that shrinks reuses the kernels.
    _same_simulation(eager.run(x[:2], 40), compiled.run(x[:2], 40))


def test_the_compiled_backend_runs_and_matches_on_a_small_network():
    # The fast suite's one compilation (~15 s on an empty inductor cache, a few seconds on
    # a warm one): the demo's network; a ResNet and a YOLO are in the slow tests.
    torch.manual_seed(1)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    qann = _demo(x)
    eager, compiled = to_snn(qann).double(), to_snn(qann, backend="compiled").double()
    _same_simulation(eager.run(x, 30, record_spikes=True), compiled.run(x, 30, record_spikes=True))
    _same_simulation(eager.run(x, 30, drop_settled=True), compiled.run(x, 30, drop_settled=True))


def test_a_neuron_without_a_pure_step_stays_eager_under_the_compiled_backend():
    class Leaky(IFNeuron):
        def forward(self, x):
            return super().forward(x * 0.9)

    assert Leaky(1.0).use_compiled() is False
    assert STBIF(1.0, 4).use_compiled() is True
    with pytest.raises(SettingError, match="backend='fast' is not valid"):
        to_snn(_demo(torch.randn(4, 1, 28, 28)), backend="fast")


def test_a_machine_that_cannot_compile_is_told_to_use_the_eager_backend(monkeypatch):
    from torch._dynamo.exc import TorchDynamoException

    import spikezip.snn.neuron as neuron

    def cannot(transition):
        def run(*args):
            raise TorchDynamoException("no C++ compiler found")

        return run

    monkeypatch.setattr(neuron, "compiled", cannot)
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    snn = to_snn(_demo(x), backend="compiled").double()
    with pytest.raises(CompileError, match=r"STBIF on cpu \(TorchDynamoException: no C"):
        snn.run(x, 3)
    assert snn.use_backend("eager").run(x, 3).timesteps == 3


@pytest.mark.parametrize("name", ["demo", "resnet20_rcr", "yolov3_tiny", "attention"])
def test_settled_samples_leaving_the_batch_change_nothing(name):
    torch.manual_seed(2)
    if name == "attention":
        qann, x = _Attention().double().eval(), torch.randn(12, 4, 3, dtype=torch.float64)
    else:
        build, shape = NETWORKS[name]
        x = torch.randn(12, *shape, dtype=torch.float64) * 2
        qann = build(x)
    snn = to_snn(qann).double()
    assert snn.rows_separable(x)
    whole = snn.run(x, 60, record_spikes=True)
    t_eq = whole.t_eq
    assert len(set(t_eq.tolist())) > 1 and bool((t_eq >= 0).all())  # they settle apart
    dropped = snn.run(x, 60, record_spikes=True, drop_settled=True)
    _same_simulation(whole, dropped)
    assert snn.running < len(x)  # some did leave
    for every in (3, 7):  # looking for settled samples less often changes nothing either
        _same_simulation(whole, snn.run(x, 60, record_spikes=True, check_every=every))
        _same_simulation(whole, snn.run(x, 60, drop_settled=True, check_every=every,
                                        record_spikes=True))  # fmt: skip
    stopped = snn.run(x, 60, stop_at_equilibrium=True, drop_settled=True, keep=5)
    assert stopped.timesteps == int(t_eq.max()) + 1 and len(stopped.outputs) == 5
    assert torch.equal(stopped.t_eq, t_eq)


class _TokensFirst(nn.Module):
    """Puts the batch in dimension 1 before its quantizer: rows of the state are tokens."""

    def __init__(self):
        super().__init__()
        self.fc, self.q, self.fc2 = nn.Linear(3, 6), QReLU(4, 0.3), nn.Linear(6, 6)
        self.q2, self.head = QReLU(4, 0.2), nn.Linear(6, 2)

    def forward(self, x):  # [B, N, 3]
        h = self.q2(self.fc2(self.q(self.fc(x).transpose(0, 1))))  # [N, B, 6]
        return self.head(h.transpose(0, 1).mean(1))


class _SamplesInner(nn.Module):
    """Flattens tokens and samples into rows with the sample index inner ([N * B, D]):
    the rows double with the batch, but a sample's rows are not consecutive."""

    def __init__(self):
        super().__init__()
        self.fc, self.q, self.fc2 = nn.Linear(3, 6), QReLU(4, 0.3), nn.Linear(6, 6)
        self.q2, self.head = QReLU(4, 0.2), nn.Linear(6, 2)

    def forward(self, x):  # [B, N, 3]
        b, n, _ = x.shape
        h = self.q2(self.fc2(self.q(self.fc(x).transpose(0, 1).flatten(0, 1))))  # [N * B, 6]
        return self.head(h.reshape(n, b, 6).mean(0))


@pytest.mark.parametrize("network", [_TokensFirst, _SamplesInner])
def test_a_network_whose_state_mixes_samples_in_a_row_is_simulated_whole(network):
    torch.manual_seed(3)
    qann = network().double().eval()
    x = torch.randn(6, 6, 3, dtype=torch.float64) * 3  # B = N: shapes alone cannot tell
    snn = to_snn(qann).double()
    assert not snn.rows_separable(x)  # what keeps samples from leaving such a batch
    whole = snn.run(x, 40)
    _same_simulation(whole, snn.run(x, 40, drop_settled=True))
    assert snn.running == len(x)


def test_the_measurement_and_energy_are_the_same_with_settled_samples_leaving():
    torch.manual_seed(4)
    x = torch.randn(40, 1, 28, 28, dtype=torch.float64) * 2
    qann = _demo(x)
    snn = to_snn(qann).double()
    y = torch.randint(0, 10, (40,))
    batches = list(zip(x.split(20), y.split(20), strict=True))

    def measure(drop: bool):
        energy = EnergyMeter(snn, (1, 28, 28), 16)
        totals = measure_snn(snn, qann, batches, timesteps=16, task=Classification(10),
                             progress=False, drop_settled=drop, meters=[energy])  # fmt: skip
        return totals, energy.result(1000), snn.running

    (a, energy_a, running_a), (b, energy_b, running_b) = measure(False), measure(True)
    assert a.report() == b.report() and torch.equal(a.t_eq_counts, b.t_eq_counts)
    assert energy_a == energy_b and energy_a["sop"][-1] > 0
    assert running_a == 20 and running_b < 20  # samples did leave the last batch


def test_outputs_are_kept_for_the_steps_asked_and_the_rest_are_held():
    torch.manual_seed(5)
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    snn = to_snn(_demo(x)).double()
    full = snn.run(x, 300)
    assert full.outputs.shape == (300, 5, 10) and full.timesteps == 300
    assert torch.equal(full.outputs[-1], full.final)
    settled = int(full.t_eq.max())
    assert torch.equal(full.outputs[settled:], full.final.expand(300 - settled, 5, 10))
    kept = snn.run(x, 300, keep=7)
    assert torch.equal(kept.outputs, full.outputs[:7]) and torch.equal(kept.final, full.final)
    assert snn.run(x, 300, keep=0).outputs.shape == (0, 5, 10)


def test_outputs_handed_over_step_by_step_are_the_kept_ones():
    torch.manual_seed(6)
    x = torch.randn(9, 1, 28, 28, dtype=torch.float64) * 2
    snn = to_snn(_demo(x)).double()
    kept = snn.run(x, 50, keep=40)
    for drop in (False, True):
        given = {}

        def take(t, out, given=given):
            given[t] = out.clone()

        sim = snn.run(x, 50, keep=40, drop_settled=drop, on_output=take)
        assert len(sim.outputs) == 0 and sorted(given) == list(range(1, 41))
        assert torch.equal(torch.stack([given[t] for t in range(1, 41)]), kept.outputs)
        assert torch.equal(sim.final, kept.final) and torch.equal(sim.t_eq, kept.t_eq)


def test_a_classifier_is_scored_step_by_step_as_it_was_from_kept_outputs(monkeypatch):
    torch.manual_seed(7)
    x = torch.randn(30, 1, 28, 28, dtype=torch.float64) * 2
    qann = _demo(x)
    y = torch.randint(0, 10, (30,))
    batches = list(zip(x.split(10), y.split(10), strict=True))

    def measure():
        snn = to_snn(qann).double()
        return measure_snn(snn, qann, batches, timesteps=24, task=Classification(10),
                           progress=False).report()  # fmt: skip

    streamed = measure()
    monkeypatch.setattr(ClassificationMeasurement, "scorer", None)  # the kept-outputs path
    kept = measure()
    errors = streamed.pop("output_error_per_t"), kept.pop("output_error_per_t")
    assert streamed == kept and 0 < streamed["snn_accuracy"][0] < 1
    assert errors[0] == pytest.approx(errors[1], rel=1e-12)
