"""QANN -> SNN: exact equivalence at equilibrium (float64), the simulator API, and refusals."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import calibrate, level_histogram, realistic_qann
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from spikezip.models import resnet18, resnet20, small_cnn, vgg16
from spikezip.quant import QReLU, to_qann
from spikezip.snn import SpikingNetwork, UnsupportedLayerError, check_equivalence, to_snn


def assert_equivalent(qann: nn.Module, x: torch.Tensor, encoding: str = "even"):
    snn = to_snn(qann, encoding=encoding).double()
    report = check_equivalence(qann, snn, x)
    assert report.reached_equilibrium, report
    assert all(layer.max_abs_diff == 0.0 for layer in report.layers), report
    assert report.output_rel_diff <= 1e-9, report
    assert report.agreement == 1.0, report
    assert report.equivalent
    return report, snn


def assert_nontrivial(qann: nn.Module, x: torch.Tensor, every: bool = True):
    """Neuron layers use at least two levels (every one, or at least one): the test
    exercises real spiking, not a network of silent or saturated neurons."""
    used = {name: int((hist > 0).sum()) for name, hist in level_histogram(qann, x).items()}
    if every:
        assert min(used.values()) >= 2, f"a layer is constant: {used}"
    else:
        assert max(used.values()) >= 2, f"every layer is constant: {used}"


# ---------------------------------------------------------------- random stacks ----


@st.composite
def random_stacks(draw):
    """A random conv / BN / ReLU / pool / linear ANN for 8x8 inputs, and its levels."""
    c_in = draw(st.integers(1, 3))
    layers, channels, size = [], c_in, 8
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(2, 6))
        layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=draw(st.booleans())))
        if draw(st.booleans()):
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        channels = out
        pool = draw(st.sampled_from(["none", "max", "avg", "avg+bn"]))
        if pool != "none" and size >= 4:
            layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            size //= 2
            if pool == "avg+bn":  # a batch-norm that has no conv to fuse into
                layers.append(nn.BatchNorm2d(channels))
    layers.append(nn.Flatten())
    features = channels * size * size
    for _ in range(draw(st.integers(0, 2))):
        hidden = draw(st.integers(3, 12))
        layers.append(nn.Linear(features, hidden))
        if draw(st.booleans()):
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Dropout(0.3)]
        features = hidden
    layers.append(nn.Linear(features, draw(st.integers(2, 5))))
    return nn.Sequential(*layers), c_in, draw(st.integers(1, 16)), draw(st.integers(0, 2**16))


def _random_stack_is_exact(case):
    ann, c_in, levels, seed = case
    torch.manual_seed(seed)
    ann.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    x = torch.randn(16, c_in, 8, 8, dtype=torch.float64)
    qann = realistic_qann(ann, levels, x, seed)
    assert_nontrivial(qann, x, every=False)
    for encoding in ("even", "once"):
        assert_equivalent(qann, x, encoding)


def _fuzz(examples: int):
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )(given(case=random_stacks())(_random_stack_is_exact))


test_random_stacks_are_exact_in_float64 = _fuzz(60)
test_many_random_stacks_are_exact_in_float64 = pytest.mark.slow(_fuzz(400))


# ------------------------------------------------------------------- the models ----

MODELS = {
    "small_cnn": (lambda: small_cnn(width=0.25), (6, 1, 28, 28)),
    "vgg16": (lambda: vgg16(num_classes=10, variant="cifar", width=0.0625), (6, 3, 32, 32)),
    "resnet20": (lambda: resnet20(width=0.25), (6, 3, 32, 32)),
    "resnet20_rcr": (lambda: resnet20(rcr=True, width=0.25), (6, 3, 32, 32)),
    "resnet18": (lambda: resnet18(num_classes=10, width=0.0625), (4, 3, 64, 64)),
    "resnet18_rcr": (lambda: resnet18(num_classes=10, rcr=True, width=0.0625), (4, 3, 64, 64)),
}


@pytest.mark.parametrize("levels", [2, 4, 8])
@pytest.mark.parametrize("name", list(MODELS))
def test_models_are_exact_in_float64(name, levels):
    build, shape = MODELS[name]
    torch.manual_seed(levels)
    x = torch.randn(shape, dtype=torch.float64)
    qann = realistic_qann(build(), levels, x, seed=levels)
    assert_nontrivial(qann, x)  # at 2 levels too: every layer spikes, none is constant
    report, snn = assert_equivalent(qann, x)
    names = [n for n, m in qann.named_modules() if isinstance(m, QReLU)]
    assert sorted(layer.name for layer in report.layers) == sorted(names)
    assert min(report.t_eq) >= snn.release_steps == levels


@pytest.mark.parametrize("levels", range(1, 17))
def test_every_level_from_1_to_16(levels):
    torch.manual_seed(100 + levels)
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    qann = realistic_qann(small_cnn(width=0.25), levels, x, seed=levels)
    assert_nontrivial(qann, x)
    assert_equivalent(qann, x)


def test_a_larger_level_count_than_the_training_ones():
    torch.manual_seed(7)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    assert_equivalent(realistic_qann(resnet20(rcr=True, width=0.25), 32, x), x)


# ------------------------------------------------------------------------- ties ----


def _tie_net(weight: torch.Tensor, bias: torch.Tensor, scale: float, levels: int):
    fc = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        fc.weight.copy_(weight)
        fc.bias.copy_(bias)
    return nn.Sequential(fc, QReLU(levels, scale)).double().eval()


def test_exact_rounding_ties_from_input_and_bias():
    # x / s + 0.5 is an integer for each unit: 0.25/0.5 + 0.5 = 1, 0.75/0.5 + 0.5 = 2, ...
    x = torch.tensor([[0.25, 0.75, 1.25, 0.0]], dtype=torch.float64)
    bias = torch.tensor([0.0, 0.0, 0.0, 0.75], dtype=torch.float64)
    qann = _tie_net(torch.eye(4, dtype=torch.float64), bias, scale=0.5, levels=8)
    assert qann(x).tolist() == [[0.5, 1.0, 1.5, 1.0]]  # half-up: levels 1, 2, 3, 2
    for encoding in ("even", "once"):
        snn = to_snn(qann, encoding).double()
        out, t_eq = snn.run_to_equilibrium(x, 50)
        assert out.tolist() == [[0.5, 1.0, 1.5, 1.0]]


# -------------------------------------------------------- simulator behaviour ----


@pytest.fixture(scope="module")
def resnet_case():
    torch.manual_seed(3)
    x = torch.randn(5, 3, 32, 32, dtype=torch.float64)
    qann = realistic_qann(resnet20(rcr=True, width=0.25), 4, x)
    return qann, to_snn(qann).double(), x


def test_simulate_is_one_pass_and_converges_to_the_qann(resnet_case):
    qann, snn, x = resnet_case
    sim = snn.run(x, 40)
    assert torch.equal(snn.simulate(x, 40), sim.outputs)  # two runs in a row: same answer
    assert sim.outputs.shape == (40, 5, 10)
    assert bool(sim.at_equilibrium.all())
    expected = qann(x)
    for b, t in enumerate(sim.t_eq.tolist()):
        after = sim.outputs[t - 1 :, b]  # from T = t_eq on, the output is final
        assert torch.equal(after, after[:1].expand_as(after))
        torch.testing.assert_close(after[0], expected[b], rtol=1e-12, atol=1e-12)
    # Before T_off the output is still incomplete.
    assert (sim.outputs[0] - expected).abs().max() > 1e-3


def test_run_to_equilibrium_stops_early_and_matches_simulate(resnet_case):
    _, snn, x = resnet_case
    out, t_eq = snn.run_to_equilibrium(x, 200)
    full = snn.run(x, 200)
    assert torch.equal(t_eq, full.t_eq)
    assert torch.equal(out, full.outputs[-1])
    early = snn.run(x, 200, stop_at_equilibrium=True)
    assert early.timesteps == int(t_eq.max()) + 1  # one quiet step proves equilibrium


def test_fast_forward_after_equilibrium_changes_nothing(resnet_case):
    _, snn, x = resnet_case
    every = snn.run(x, 40, record_spikes=True, fast_forward=False)
    fast = snn.run(x, 40, record_spikes=True)
    assert torch.equal(every.outputs, fast.outputs)
    assert torch.equal(every.t_eq, fast.t_eq)
    for name in every.spike_counts:
        assert torch.equal(every.spike_counts[name], fast.spike_counts[name])


def test_run_to_equilibrium_warns_when_budget_is_too_small(resnet_case):
    _, snn, x = resnet_case
    with pytest.warns(UserWarning, match="did not reach equilibrium"):
        _, t_eq = snn.run_to_equilibrium(x, 3)
    assert (t_eq == -1).all()


def test_spike_counts_per_layer_and_step(resnet_case):
    _, snn, x = resnet_case
    manual = {name: torch.zeros(5, dtype=torch.float64) for name in snn.neurons}

    def count(_t, net):
        for name, neuron in net.neurons.items():
            manual[name] += neuron.spike.abs().flatten(1).sum(1)

    sim = snn.run(x, 30, record_spikes=True, on_step=count)
    assert set(sim.spike_counts) == set(snn.neurons)
    for name, neuron in snn.neurons.items():
        per_step = sim.spike_counts[name]
        assert per_step.shape == (30, 5)
        assert torch.equal(per_step.sum(0).to(manual[name].dtype), manual[name])
        # Every +1 and -1 counts: the total is at least the net charge (the tracer).
        assert (per_step.sum(0) >= neuron.tracer.flatten(1).sum(1)).all()
    assert sum(c.sum() for c in sim.spike_counts.values()) > 0


def test_once_encoding_differs_at_small_t_but_agrees_at_equilibrium(resnet_case):
    qann, _, x = resnet_case
    even = to_snn(qann, "even").double().run(x, 60)
    once = to_snn(qann, "once").double().run(x, 60)
    assert not torch.equal(even.outputs[0], once.outputs[0])
    torch.testing.assert_close(even.outputs[-1], once.outputs[-1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(once.outputs[-1], qann(x), rtol=1e-12, atol=1e-12)


def test_float32_runs_and_reports_agreement():
    torch.manual_seed(11)
    x64 = torch.randn(32, 1, 28, 28, dtype=torch.float64)
    qann = realistic_qann(small_cnn(width=0.5), 8, x64).float()
    report = check_equivalence(qann, to_snn(qann), x64.float())
    assert report.dtype == "float32" and report.rtol == 1e-4
    assert report.reached_equilibrium
    assert 0.9 <= report.agreement <= 1.0
    assert "argmax agreement" in str(report)


def test_check_equivalence_catches_an_off_by_one_tracer_bound():
    torch.manual_seed(5)
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64)
    qann = realistic_qann(small_cnn(width=0.25), 2, x)
    snn = to_snn(qann).double()
    neuron = snn.neurons["features.2"]
    neuron.levels -= 1  # the public-code bug: tracer clipped at n - 1
    report = check_equivalence(qann, snn, x)
    assert not report.equivalent
    bad = next(layer for layer in report.layers if layer.name == "features.2")
    assert bad.mismatches > 0


def test_input_dtype_mismatch_is_a_clear_error(resnet_case):
    _, snn, x = resnet_case
    with pytest.raises(TypeError, match="input is torch.float32 .* SNN is torch.float64"):
        snn.simulate(x.float(), 2)


def test_conversion_leaves_the_qann_untouched(resnet_case):
    qann, _, x = resnet_case
    before = {k: v.clone() for k, v in qann.state_dict().items()}
    to_snn(qann)
    after = qann.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(qann.bn1, nn.BatchNorm2d)


# -------------------------------------------------------------------- refusals ----


def _qann(model):
    return to_qann(model, 4)


class _FunctionalReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act, self.out = nn.Linear(4, 4), QReLU(4, 0.5), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(F.relu(self.act(self.fc(x))))


class _SharedQReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(4, 4), nn.Linear(4, 4), QReLU(4, 0.5)

    def forward(self, x):
        return self.act(self.b(self.act(self.a(x))))


class _ConstantAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act = nn.Linear(4, 4), QReLU(4, 0.5)

    def forward(self, x):
        return self.act(self.fc(x) + 1.0)


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = QReLU(2, 1.0)

    def forward(self, x, y):
        return self.act(x + y)


class _ControlFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = QReLU(2, 1.0)

    def forward(self, x):
        return self.act(x) if x.sum() > 0 else x


class _Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = QReLU(2, 1.0), QReLU(2, 1.0)

    def forward(self, x):
        return self.a(x) * self.b(x)


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), r"ReLU at '1'.*to_qann"),
        (
            nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False), QReLU(2)),
            r"track_running_stats=False",
        ),
        (nn.Sequential(nn.Linear(4, 4)), r"no QReLU"),
        (_FunctionalReLU(), r"function 'relu'.*cannot be converted exactly"),
        (_SharedQReLU(), r"QReLU 'act' is called at 2 places"),
        (_TwoInputs(), r"takes 2 inputs"),
        (_ControlFlow(), r"could not trace _ControlFlow"),
    ],
)
def test_unconvertible_layers_are_named(model, match):
    with pytest.raises(UnsupportedLayerError, match=match):
        to_snn(model)


# Exact as accumulating operators, graded spikes or released constants when the input is
# released once; a rate-coded SNN, whose input keeps coming, cannot carry them.
_EXACT_ONLY_WHEN_RELEASED = [
    (nn.Sequential(nn.Linear(4, 4), QReLU(2, 1.0), nn.GELU()), r"GELU at '2'.*accumulating"),
    (
        nn.Sequential(nn.Conv2d(1, 2, 3), QReLU(2, 1.0), nn.MaxPool2d(2)),
        r"MaxPool2d at '2'.*not linear",
    ),
    (nn.Sequential(nn.Linear(4, 4), QReLU(2, 1.0), nn.Softmax(-1)), r"Softmax at '2'.*rate-coded"),
    (_ConstantAdd(), r"adds a constant"),
    (_Product(), r"function 'mul'.*cannot be converted exactly"),
]


@pytest.mark.parametrize("model, match", _EXACT_ONLY_WHEN_RELEASED)
def test_a_rate_coded_snn_refuses_what_needs_a_released_input(model, match):
    with pytest.raises(UnsupportedLayerError, match=match):
        to_snn(model, encoding="constant")


@pytest.mark.parametrize("model, _match", _EXACT_ONLY_WHEN_RELEASED)
def test_what_needs_a_released_input_converts_exactly_with_it(model, _match):
    model = copy.deepcopy(model).double()
    torch.manual_seed(0)  # the weights too: built at import, they follow collection order
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.reset_parameters()
    shape = (1, 6, 6) if any(isinstance(m, nn.Conv2d) for m in model.modules()) else (4,)
    x = torch.randn(5, *shape, dtype=torch.float64) * 6  # some neurons reach level 2: two steps
    for encoding in ("even", "once"):
        _, snn = assert_equivalent(model, x, encoding)
        sim = snn.run(x, 100)
        assert not torch.equal(sim.outputs[0], sim.final)  # a simulation, not a copy


def test_bad_encoding_and_release_steps():
    qann = nn.Sequential(nn.Linear(2, 2), QReLU(2, 1.0))
    with pytest.raises(ValueError, match="encoding='rate' is not valid"):
        to_snn(qann, encoding="rate")
    with pytest.raises(ValueError, match="release_steps"):
        to_snn(qann, encoding="once", release_steps=3)
    assert isinstance(to_snn(qann, release_steps=5), SpikingNetwork)
    assert to_snn(qann, release_steps=5).release_steps == 5


def test_unfused_and_standalone_batchnorm_are_exact():
    # A BN after an add and a BN whose conv feeds two consumers cannot be fused: they are
    # stepped as per-channel affine maps with their shift released.
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.bn_a, self.bn_b = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
            self.act_a, self.act_b = nn.ReLU(), nn.ReLU()
            self.head = nn.Linear(3 * 6 * 6, 4)

        def forward(self, x):
            y = self.conv(x)
            z = self.act_a(self.bn_a(y)) + y
            return self.head(self.act_b(self.bn_b(z)).flatten(1))

    torch.manual_seed(2)
    x = torch.randn(8, 2, 6, 6, dtype=torch.float64)
    qann = calibrate(to_qann(Net(), 5), x)
    assert_nontrivial(qann, x)
    assert_equivalent(qann, x)


# ------------------------------------------------------------- full-size, slow ----


@pytest.mark.slow
@pytest.mark.parametrize(
    "build",
    [
        lambda: vgg16(num_classes=100, variant="cifar"),
        lambda: resnet20(num_classes=100, rcr=True),
        lambda: resnet20(num_classes=100),
    ],
)
def test_full_width_cifar_models_are_exact_in_float64(build):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    qann = realistic_qann(build(), 8, x)
    assert_nontrivial(qann, x)
    assert_equivalent(qann, x)


@pytest.mark.slow
def test_trained_network_float32_agreement_on_mnist5k():
    from torch.utils.data import DataLoader

    from spikezip.data import load_mnist5k

    torch.manual_seed(0)
    train, test = load_mnist5k()
    qann = to_qann(small_cnn(width=0.5), 8)
    opt = torch.optim.Adam(qann.parameters(), lr=1e-3)
    qann.train()
    for x, y in DataLoader(train, batch_size=64, shuffle=True):
        opt.zero_grad()
        F.cross_entropy(qann(x), y).backward()
        opt.step()
    qann.eval()
    x, y = test.tensors
    assert float((qann(x).argmax(-1) == y).float().mean()) > 0.9  # it learned something
    report = check_equivalence(qann, to_snn(qann), x)
    assert report.reached_equilibrium
    assert report.agreement >= 0.99
    levels = sum(layer.numel for layer in report.layers)
    assert sum(layer.mismatches for layer in report.layers) <= 1e-5 * levels


def test_the_proof_is_of_the_float64_conversion_not_a_rounded_one(tmp_path):
    """A neuron ~1e-8 above a level boundary: the QANN rounds it up. An SNN whose folded
    batch-norm weight was rounded to float32 puts it below and fires one spike less;
    the conversion proven (and saved) is the float64 fold, which is exact."""
    from spikezip.conversion import convert_and_prove

    bn = nn.BatchNorm2d(1).eval()
    with torch.no_grad():
        bn.running_var.fill_(0.3)
        bn.weight.fill_(0.7)
        bn.bias.fill_(0.1)
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    qann = nn.Sequential(conv, bn, QReLU(8, scale=1.0), nn.Flatten()).eval()
    exact = (bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()).item()
    rounded = float(torch.tensor(exact, dtype=torch.float32))
    assert rounded != exact
    # the input whose pre-activation is 2.5 (a tie) in float64, nudged 1e-12 across it
    # to the side the float32-rounded weight does not reach
    direction = 1.0 if rounded < exact else -1.0
    beta = bn.bias.double().item()  # 0.1 as float32 holds it
    x = torch.tensor((2.5 - beta + direction * 1e-12) / exact, dtype=torch.float64)
    x = x.reshape(1, 1, 1, 1)
    qann64 = copy.deepcopy(qann).double()
    assert abs(qann64(x).item() - (3.0 if direction > 0 else 2.0)) < 1e-12
    upcast = to_snn(qann).double()  # the float32 SNN, upcast: one level off
    assert not check_equivalence(qann64, upcast, x).equivalent
    metadata = {"arch": {"name": "custom"}, "levels": 8, "input_shape": [1, 1, 1]}
    result = convert_and_prove(qann, metadata, tmp_path, sample=x)
    assert result["equivalent"] and (tmp_path / "snn.pt").is_file()
