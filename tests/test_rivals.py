"""The rival conversion methods of the paper's Table 3 (Offset, SRP, SlipReLU, Fast-SNN,
QFFS), each against neuron traces computed by hand from its paper's rule, and the steps
before their output counted in T."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

import spikezip.lit.pipeline as pipeline
from spikezip.artifacts import load_snn
from spikezip.baselines.fastsnn import SignedIF, UniformQuantReLU, to_fastsnn_snn
from spikezip.baselines.offset import OffsetIF, to_offset_snn
from spikezip.baselines.qcfs import QCFS, to_if_snn
from spikezip.baselines.qffs import to_qffs_snn
from spikezip.baselines.slipr import SlipReLU, to_slipr_snn
from spikezip.baselines.srp import to_srp_snn
from spikezip.config import ConfigError, register_configs
from spikezip.config.build import validate
from spikezip.config.identity import run_identity
from spikezip.config.schema import TrainConfig
from spikezip.methods import METHODS, MethodConfig
from spikezip.models import small_cnn
from spikezip.quant import QReLU
from spikezip.tasks import read_report


def _chain(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers).double()


def _linear(weight: float, bias: float | None) -> nn.Linear:
    layer = nn.Linear(1, 1, bias=bias is not None)
    with torch.no_grad():
        layer.weight.fill_(weight)
        if bias is not None:
            layer.bias.fill_(bias)
    return layer


def _spikes(outputs: torch.Tensor, value: float = 1.0) -> list[float]:
    """Spikes per step from a one-output SNN's accumulated outputs."""
    out = outputs[:, 0, 0]
    return (torch.diff(out, prepend=out.new_zeros(1)) / value).tolist()


X = torch.ones(1, 1, dtype=torch.float64)


# ------------------------------------------------------------------------ SlipReLU ----


def test_slip_relu_weighs_a_clipped_relu_and_a_clip_floor_step():
    act = SlipReLU(levels=4, coefficient=0.5, threshold=2.0)
    x = torch.tensor([-1.0, 0.3, 0.6, 1.0, 3.0], requires_grad=True)
    out = act(x)
    # By hand, theta = 2, L = 4, a = 1/2: z = x / 2; ramp = clip(z, 0, 1);
    # step = clip(floor(4 z + 1/2) / 4, 0, 1); h = 2 (ramp / 2 + step / 2).
    # x = 0.3: z = .15, step floor(1.1) / 4 = .25 -> h = .15 + .25 = .4;  x = 0.6: .3 + .25
    assert out.tolist() == pytest.approx([0.0, 0.4, 0.55, 1.0, 2.0])
    out.sum().backward()  # the ramp passes a, the floor (straight-through) 1 - a
    assert x.grad.tolist() == pytest.approx([0.0, 1.0, 1.0, 1.0, 0.0])
    qcfs = QCFS(4, threshold=2.0)
    y = torch.linspace(-1, 3, 41)
    assert torch.equal(SlipReLU(4, 0.0, 2.0)(y), qcfs(y))  # a = 0 is QCFS
    assert torch.allclose(SlipReLU(4, 1.0, 2.0)(y), y.clamp(0, 2))  # a = 1 a clipped ReLU


@pytest.mark.parametrize("coefficient", [0.0, 0.5, 0.9])
def test_the_slip_relu_snn_starts_at_the_steps_shift_whatever_the_coefficient(coefficient):
    theta = 2.0
    ann = _chain(_linear(0.75, None), SlipReLU(4, coefficient, theta), _linear(1.0, None))
    snn = to_slipr_snn(ann).double()
    (neuron,) = snn.neurons.values()
    assert neuron.threshold.item() == theta and neuron.start == 0.5
    # In units of theta the neuron gets 3/8 a step from V0 = 1/2 (as OPI's test):
    # V: 7/8, 10/8 -> spike, 5/8, 8/8 -> spike, 3/8, 6/8, 9/8 -> spike, 4/8
    assert _spikes(snn.simulate(X, 8), theta) == [0, 1, 0, 1, 0, 0, 1, 0]


# -------------------------------------------------------------------------- Offset ----


def _probe(inputs: list[float]) -> OffsetIF:
    neuron = OffsetIF(1.0).double()
    neuron.probing = True
    for value in inputs:
        neuron(torch.tensor([value], dtype=torch.float64))
    neuron.calibrate()
    return neuron


def test_an_offset_spike_shifts_the_start_potential_by_one_threshold():
    # One spike too many: V 1.5 -> fires (at 1.5) -> 0.5, 0.1, -0.3, -0.7; count 1 and
    # V < 0: V0 = 1/2 - max(1, 1.5 - 0.999) = -1/2.
    assert _probe([1.0, -0.4, -0.4, -0.4]).initial.item() == pytest.approx(-0.5)
    # A shift beyond one threshold: fired at 2.7 -> V0 = 1/2 - (2.7 - 0.999).
    assert _probe([2.2, -2.0]).initial.item() == pytest.approx(0.5 - 1.701)
    # One too few: V 0.7 (silent), 3.2 -> fires -> 2.2 -> fires -> 1.2 >= 1:
    # V0 = 1/2 + max(1, 1.001 - 0.7) = 3/2.
    assert _probe([0.2, 2.5, 0.0]).initial.item() == pytest.approx(1.5)
    # Fired on every step and still >= 1 (no silent step: the authors' -1000): 1001.501.
    assert _probe([2.5, 0.1]).initial.item() == pytest.approx(1001.501)
    # No offset: V 0.8, 1.1 -> fires -> 0.1, 0.4, 0.7: V0 stays 1/2.
    assert _probe([0.3, 0.3, 0.3, 0.3]).initial.item() == 0.5
    # Below zero but never fired: no spike to take back, V0 stays 1/2.
    assert _probe([-1.0, -1.0]).initial.item() == 0.5


def _offset_net() -> nn.Module:
    # A gets 1/2 a step, fires 1, 0, 1, 0, ...; B gets A's spikes - 1/2: 1/2, -1/2, ...
    return _chain(_linear(0.5, 0.0), QCFS(4, 1.0), _linear(1.0, -0.5), QCFS(4, 1.0),
                  _linear(1.0, None))  # fmt: skip


def test_offset_calibrates_layer_after_layer_and_counts_its_probe_steps_in_t():
    ann = _offset_net()
    with torch.no_grad():
        assert ann(X).item() == 0.0  # B = clip-floor(1/2 - 1/2) = 0
    snn = to_offset_snn(ann, rho=4).double()
    assert snn.overhead == 4 and snn.sequential_overhead == 8
    outputs = snn.simulate(X, 10)
    a, b = snn.neurons.values()
    # A (V0 1/2): V 1 -> fires -> 0, 1/2, 1 -> fires -> 0, 1/2: no offset, V0 = 1/2.
    # B, fed 1/2, -1/2, 1/2, -1/2 from V0 1/2: V 1 -> fires (at 1) -> 0, -1/2, 0, -1/2:
    # one spike too many, V0 = 1/2 - 1 = -1/2; from there V 0, -1/2, 0, ... never fires.
    assert a.initial.item() == 0.5 and b.initial.item() == -0.5
    assert outputs[:, 0, 0].tolist() == [0.0] * 10  # nothing during the 4 probe steps
    qcfs = to_if_snn(ann).double().simulate(X, 10)  # without the shift: the offset spike
    assert qcfs[:, 0, 0].tolist() == [1.0] * 10
    with pytest.raises(ValueError, match="spends its first 4 steps"):
        snn.simulate(X, 4)


# ----------------------------------------------------------------------------- SRP ----


@pytest.mark.parametrize(
    ("tau", "gates", "spikes"),
    [
        # tau 4: A's residual 1/2 > 0 (gate on), B's -1/2 (gate off): A fires 1, 0, 1, 0
        # again from 1/2, B is silenced; the output (B's) is 0 throughout.
        (4, [1.0, 0.0], [0.0] * 6),
        # tau 3: A's residual after 1, 0, 1 is exactly 0 (not above 1e-3): A is silenced,
        # so B gets -1/2 a step and never fires either.
        (3, [0.0, 0.0], [0.0] * 6),
    ],
)
def test_srp_gates_each_neuron_by_its_residual_potential_after_tau_steps(tau, gates, spikes):
    snn = to_srp_snn(_offset_net(), tau=tau).double()
    assert snn.overhead == tau
    outputs = snn.simulate(X, tau + 6)
    assert [n.gate.item() for n in snn.neurons.values()] == gates
    assert _spikes(outputs[tau:]) == spikes
    assert outputs[:tau, 0, 0].tolist() == [0.0] * tau


def test_an_srp_neuron_keeps_integrating_and_firing_behind_a_closed_gate():
    snn = to_srp_snn(_offset_net(), tau=4).double()
    seen = []
    snn.run(X, 8, on_step=lambda t, net: seen.append(list(net.neurons.values())[1].v.item()))
    # B restarts at 1/2 after step 4 and, gated off, still fires inside: V 1 -> 0, -1/2, 0, -1/2
    assert seen[4:] == [0.0, -0.5, 0.0, -0.5]


# ------------------------------------------------------------------------ Fast-SNN ----


def test_the_uniform_quantizer_rounds_inside_its_learned_clip():
    act = UniformQuantReLU(levels=4, clip=2.0)
    x = torch.tensor([-1.0, 0.3, 1.0, 1.3, 3.0], requires_grad=True)
    out = act(x)
    # u = relu(x) / 2 = 0, .15, .5, .65, 1.5; q = round(4 clip(u, 0, 1)) / 4 = 0, .25, .5, .75, 1
    assert out.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # inside the clip only
    # alpha's (APoT): 1 above the clip, q - u inside: 0 + .1 + 0 + .1 + 1
    assert act.threshold.grad.item() == pytest.approx(1.2)


def test_a_signed_if_neuron_takes_back_a_spike_it_fired_too_early():
    neuron = SignedIF(1.0).double()
    spikes = []
    for value in [1.0, -0.75, -0.5, 0.25, -2.0, -2.0]:
        neuron(torch.tensor([value], dtype=torch.float64))
        spikes.append(neuron.spike.item())
    # V0 1/2: 1.5 -> +1 -> 1/2; -1/4 <= -1e-3 with one spike out -> -1, V 3/4, count 0;
    # 1/4; 1/2; -3/2 but no spike left to take back; -7/2: none either.
    assert spikes == [1.0, -1.0, 0.0, 0.0, 0.0, 0.0]
    assert neuron.count.item() == 0 and neuron.v.item() == -3.5
    near = SignedIF(1.0).double()
    for value in [0.5, -1.0005]:  # 1 -> +1 -> 0; -1.0005 -> -1 (V -0.0005 after)
        near(torch.tensor([value], dtype=torch.float64))
    assert near.spike.item() == -1.0 and near.v.item() == pytest.approx(-0.0005)


def test_the_fast_snn_snn_has_signed_neurons_at_the_learned_clip():
    ann = _chain(_linear(1.0, -0.5), UniformQuantReLU(4, 2.0), _linear(1.0, None))
    snn = to_fastsnn_snn(ann).double()
    (neuron,) = snn.neurons.values()
    assert isinstance(neuron, SignedIF) and neuron.threshold.item() == 2.0
    assert neuron.start == 0.5


# ---------------------------------------------------------------------------- QFFS ----


def test_the_qffs_snn_fires_at_the_clip_and_takes_back_spikes_below_zero():
    ann = _chain(_linear(0.75, None), QReLU(2, scale=1.0), _linear(1.0, None))
    snn = to_qffs_snn(ann).double()
    (neuron,) = snn.neurons.values()
    assert isinstance(neuron, SignedIF) and neuron.threshold.item() == 2.0  # L * s
    # 3/4 a step from V0 = 1: 7/4, 10/4 -> +1 (1/2), 5/4, 8/4 -> +1 (0), 3/4, 6/4: after
    # T = L = 2 steps one spike (of 2), the level round(3/4) = 1 of the Q-ReLU, as a rate.
    assert _spikes(snn.simulate(X, 6), 2.0) == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    # A negative spike as soon as V < 0 with a spike out (Fast-SNN waits for -1e-3):
    # V0 1: 3 -> +1 (1); -0.0005 -> -1 (V 1.9995).
    qffs, fast = neuron.__class__(2.0, margin=0.0).double(), SignedIF(2.0).double()
    for n in (qffs, fast):
        for value in [2.0, -1.0005]:
            n(torch.tensor([value], dtype=torch.float64))
    assert qffs.spike.item() == -1.0 and qffs.v.item() == pytest.approx(1.9995)
    assert fast.spike.item() == 0.0 and fast.count.item() == 1.0


# ---------------------------------------------------------------- every rival method ----

RIVALS = ["offset", "srp", "slipr", "fastsnn", "qffs"]


@pytest.mark.parametrize("name", RIVALS)
def test_each_rival_converts_a_cnn_and_counts_its_own_steps(name):
    torch.manual_seed(0)
    method = METHODS[name]
    settings = MethodConfig(name=name)
    ann = method.student(small_cnn(width=0.25), 4, settings)
    x = torch.randn(3, 1, 28, 28)
    ann.train()
    ann(x)
    ann.eval()
    snn = method.convert(ann, settings=settings)
    assert method.exact is False and snn.overhead == {"offset": 4, "srp": 4}.get(name, 0)
    outputs = snn.simulate(x, 12)
    assert outputs.shape == (12, 3, 10)
    assert not outputs[: snn.overhead].any() and outputs[-1].any()


# ------------------------------------------------------------------- train.py runs ----

ROOT = Path(__file__).resolve().parents[1]
register_configs()


def _compose(overrides=()):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_a_run_reports_the_steps_its_method_spends_before_any_output(tmp_path):
    cfg = _compose(["method=srp", "method.tau=3", "data=digits", "trainer=debug"])
    pipeline.train(cfg, tmp_path / "run")
    report = read_report(tmp_path / "run" / "snn_eval.json")
    assert report.overhead_steps == 3 and report.method == "srp"
    # No output in the first 3 steps: every prediction is the first class then.
    assert len(set(report.snn_accuracy[:3])) == 1
    assert "each T counts the 3 steps srp spends" in report.summary()
    snn, _, _ = load_snn(tmp_path / "run" / "snn.pt")
    assert snn.overhead == 3  # rebuilt with the run's tau


def test_a_simulation_no_longer_than_the_steps_before_any_output_is_refused():
    with pytest.raises(ConfigError, match="snn.timesteps must be above 4, got 4"):
        validate(_compose(["method=offset", "snn.timesteps=4"]), TrainConfig)
    validate(_compose(["method=offset", "snn.timesteps=5"]), TrainConfig)


def test_a_setting_of_another_method_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="this run would not use settings") as info:
        pipeline.train(
            _compose(["method=srp", "method.rho=8", "data=digits", "trainer=debug"]), tmp_path
        )
    assert "method.rho=8" in str(info.value)
    assert "method=srp does not read it (a setting of method=offset)" in str(info.value)
    with pytest.raises(ConfigError, match="a setting of method=rate"):
        pipeline.train(_compose(["method=qcfs", "method.percentile=50", "data=digits"]), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_methods_own_settings_are_in_its_identity_and_no_others():
    identity = run_identity(validate(_compose(["method=offset"]), TrainConfig))
    method = {k: v for k, v in identity.items() if k.startswith("method.")}
    assert method == {"method.name": "offset", "method.levels": 4, "method.rho": 4}
    assert "pet.levels" not in identity  # the method's own L replaces it


def test_each_rival_defaults_to_its_papers_settings_for_the_dataset():
    def method(*overrides):
        return validate(_compose(list(overrides)), TrainConfig).method

    small = {m: method(f"method={m}") for m in ("qcfs", "offset", "srp", "slipr", "fastsnn")}
    assert [small[m].levels for m in small] == [4, 4, 4, 16, 7]
    assert (small["offset"].rho, small["srp"].tau) == (4, 4)
    imagenet = method("method=offset", "data=imagenet")
    assert (imagenet.levels, imagenet.rho) == (16, 8)
    assert method("method=srp", "data=imagenet").tau == 8
    assert method("method=qcfs", "method.levels=8").levels == 8  # a choice of its own


def test_pet_levels_given_to_a_method_with_levels_of_its_own_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="quantizes at method.levels = 4"):
        pipeline.train(_compose(["method=qcfs", "pet.levels=[8]", "data=digits"]), tmp_path)
