"""Operators beyond ReLU: graded spikes, accumulating operators, released constants, several
outputs and shape arithmetic; hand-computed traces, then exact float64 conversions."""

import math

import pytest
import torch
from test_convert import assert_equivalent
from torch import nn

from spikezip.quant import QReLU, to_qann
from spikezip.snn import UnsupportedLayerError, to_snn
from spikezip.snn.layers import ReleasedConstant
from spikezip.snn.operators import Accumulating, GradedNeuron


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def _gelu(v: float) -> float:
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def _steps(module, inputs):
    module.reset()
    return [module(torch.tensor(x, dtype=torch.float64)).tolist() for x in inputs]


# ---------------------------------------------------------------- hand traces ----


def test_a_graded_spike_carries_the_change_of_f():
    # Vthr 1, V0 0.5, total input 2.6 at step 1: V 3.1 -> spikes at steps 1, 2, 3
    # (V 2.1, 1.1, 0.1), the level settles at floor(2.6 + 0.5) = 3.
    neuron = GradedNeuron(1.0, levels=4, fn=nn.Sigmoid())
    out = _steps(neuron, [[2.6], [0.0], [0.0], [0.0]])
    s1, s2, s3 = _sigmoid(1), _sigmoid(2), _sigmoid(3)
    assert sum(out, []) == pytest.approx([s1, s2 - s1, s3 - s2, 0.0], abs=1e-15)
    assert neuron.count.item() == 3 and neuron.accumulated().item() == 3.0
    assert neuron.accumulated_output().item() == pytest.approx(s3, abs=1e-15)


def test_a_signed_graded_spike_goes_down_one_level_per_step():
    # Tracer in [-2, 2]; total input -1.7: V -1.2 < 0 -> -1 (V -0.2), -1 again (V 0.8),
    # then quiet at floor(-1.7 + 0.5) = -2. The spikes carry GELU's change each time.
    neuron = GradedNeuron(1.0, levels=2, fn=nn.GELU(), tracer_min=-2)
    out = _steps(neuron, [[-1.7], [0.0], [0.0]])
    g1, g2 = _gelu(-1), _gelu(-2)
    assert sum(out, []) == pytest.approx([g1, g2 - g1, 0.0], abs=1e-15)
    assert neuron.spike.item() == 0 and neuron.count.item() == -2


def test_an_accumulating_softmax_emits_the_change_of_its_output():
    softmax = Accumulating(nn.Softmax(-1), [True], "softmax")
    out = _steps(softmax, [[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    e = math.e
    first = [e / (e + 1), 1 / (e + 1)]  # softmax([1, 0])
    second = [1 / (1 + e), e / (1 + e)]  # softmax([1, 2])
    assert out[0] == pytest.approx(first, abs=1e-15)
    assert out[1] == pytest.approx([second[0] - first[0], second[1] - first[1]], abs=1e-15)
    assert out[2] == [0.0, 0.0]
    assert softmax.evaluations == 2  # the unchanged third step computed nothing


def test_an_accumulating_product_of_two_activations():
    product = Accumulating(torch.mul, [True, True], "a * b")
    product.reset()
    steps = [([2.0], [1.0]), ([1.0], [0.0]), ([0.0], [-3.0])]
    out = [product(torch.tensor(a), torch.tensor(b)).item() for a, b in steps]
    # A·B after each step: 2·1 = 2, 3·1 = 3, 3·(-2) = -6; the changes are emitted.
    assert out == [2.0, 1.0, -9.0]


def test_an_accumulating_layer_norm_emits_its_shift_once_for_a_zero_input():
    norm = nn.LayerNorm(2).double()
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.25, -1.0]))
    ln = Accumulating(norm, [True], "LayerNorm")
    assert _steps(ln, [[0.0, 0.0], [0.0, 0.0]]) == [[0.25, -1.0], [0.0, 0.0]]


def test_a_released_constant_enters_as_a_bias_does():
    release = ReleasedConstant()
    release.begin(4)
    release.releasing = True
    assert release(torch.tensor([2.0])).tolist() == [0.5] and release(3.0) == 0.75
    release.releasing = False
    assert release(torch.tensor([2.0])).tolist() == [0.0] and release(3.0) == 0.0


# ---------------------------------------------------------------- networks ----


class _Attention(nn.Module):
    """One attention block written out: signed quantizers on Q, K, V, an unsigned one on
    the attention map, LayerNorm on the residual stream, a positional embedding and a
    class token (constants added and concatenated), a GELU MLP with graded spikes."""

    def __init__(self, dim=8, tokens=4, levels=4):
        super().__init__()
        self.embed = nn.Linear(3, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.5)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q_in, self.mlp_in = QReLU(levels, 0.3, signed=True), QReLU(levels, 0.3, signed=True)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q, self.k, self.v = (QReLU(levels, 0.4, signed=True) for _ in range(3))
        self.attn = QReLU(levels, 0.25)
        self.proj = nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.fc1_q, self.act = QReLU(levels, 0.3, signed=True), nn.GELU()
        self.mlp_q = QReLU(levels, 0.1, signed=True)
        self.head = nn.Linear(dim, 5)
        self.scale = dim**-0.5

    def forward(self, x):
        x = self.embed(x)
        x = torch.cat([self.cls.expand(x.size(0), -1, -1), x], dim=1) + self.pos
        h = self.q_in(self.norm1(x))
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q, k, v = self.q(q), self.k(k), self.v(v)
        a = self.attn((q @ k.transpose(-2, -1) * self.scale).softmax(-1))
        x = x + self.proj(a @ v)
        h = self.mlp_in(self.norm2(x))
        x = x + self.fc2(self.mlp_q(self.act(self.fc1_q(self.fc1(h)))))
        return self.head(x[:, 0])


def test_a_hand_written_attention_block_converts_exactly():
    torch.manual_seed(0)
    qann = _Attention().double().eval()
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    report, snn = assert_equivalent(qann, x)
    ops = snn.operators
    assert ops["norm1"] == ops["norm2"] == ops["softmax"] == ops["matmul"] == "accumulating"
    assert ops["q"] == ops["act"] == "spiking" and ops["cat"] == ops["add"] == "linear"
    assert [n for n, m in snn.neurons.items() if isinstance(m, GradedNeuron)] == ["fc1_q"]
    assert {n.tracer_min for n in snn.neurons.values()} == {-4, 0}  # signed and unsigned
    assert report.operators == ops and report.t_eq and min(report.t_eq) > 4
    sim = snn.run(x, 200)
    assert not torch.equal(sim.outputs[0], sim.final)


def test_gelu_after_a_quantizer_becomes_graded_spikes_and_converts_exactly():
    torch.manual_seed(1)
    qann = nn.Sequential(
        nn.Linear(4, 6), QReLU(4, 0.3), nn.GELU(), nn.Linear(6, 6), QReLU(4, 0.3), nn.SiLU(),
        nn.Linear(6, 3),
    ).double()  # fmt: skip
    x = torch.randn(8, 4, dtype=torch.float64) * 2
    report, snn = assert_equivalent(qann, x)
    assert [type(n).__name__ for n in snn.neurons.values()] == ["GradedNeuron"] * 2
    assert snn.operators == {"0": "linear", "1": "spiking", "2": "spiking", "3": "linear",
                             "4": "spiking", "5": "spiking", "6": "linear"}  # fmt: skip


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), QReLU(4, 0.5))
        self.box = nn.Conv2d(4, 2, 1)
        self.cls = nn.Sequential(nn.Conv2d(4, 3, 1), QReLU(4, 0.5), nn.Conv2d(3, 3, 1))

    def forward(self, x):
        y = self.body(x)
        return self.box(y), {"cls": self.cls(y).flatten(1)}


def test_a_network_with_several_outputs_converts_exactly_output_by_output():
    torch.manual_seed(2)
    qann = _TwoHeads().double().eval()
    x = torch.randn(4, 1, 7, 7, dtype=torch.float64)
    _, snn = assert_equivalent(qann, x)
    sim = snn.run(x, 40)
    box, heads = sim.outputs
    assert box.shape == (40, 4, 2, 5, 5) and heads["cls"].shape == (40, 4, 75)
    ann_box, ann_heads = qann(x)
    assert torch.allclose(sim.final[0], ann_box, rtol=0, atol=1e-12)
    assert torch.allclose(sim.final[1]["cls"], ann_heads["cls"], rtol=0, atol=1e-12)


def test_shufflenet_v2_and_its_shape_arithmetic_convert_exactly():
    from torchvision.models import shufflenet_v2_x0_5

    torch.manual_seed(3)
    qann = to_qann(shufflenet_v2_x0_5(num_classes=10), 4).double()
    with torch.no_grad():
        qann.train()(torch.randn(4, 3, 32, 32, dtype=torch.float64))  # LSQ's scale init
    qann.eval()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    report, _ = assert_equivalent(qann, x)


@pytest.mark.parametrize(
    "op, match",
    [
        (lambda y: y.argmax(-1, keepdim=True).float(), r"an index"),
        (lambda y: torch.sort(y, -1).values, r"an index or an order"),
        (lambda y: y.topk(1, -1).values, r"an index"),
        (lambda y: y + torch.rand_like(y), r"random"),
    ],
)
def test_what_has_no_exact_form_is_refused_with_its_name_and_place(op, match):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), QReLU(4, 0.5)

        def forward(self, x):
            return op(self.act(self.fc(x)))

    with pytest.raises(UnsupportedLayerError, match=r"graph node.*test_operators.py.*" + match):
        to_snn(Net())


def test_control_flow_on_activations_is_refused_at_its_line():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), QReLU(4, 0.5)

        def forward(self, x):
            y = self.act(self.fc(x))
            if y.sum() > 0:  # data-dependent: which branch depends on the input
                return 2 * y
            return y

    with pytest.raises(
        UnsupportedLayerError,
        match=r"could not trace Net at .*test_operators.py:\d+ in forward \(if y.sum\(\) > 0:.*"
        r"control flow",
    ):
        to_snn(Net())


def test_multihead_attention_is_refused_until_written_out():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.act, self.mha = QReLU(4, 0.5), nn.MultiheadAttention(4, 1, batch_first=True)

        def forward(self, x):
            y = self.act(x)
            return self.mha(y, y, y)[0]

    with pytest.raises(UnsupportedLayerError, match="MultiheadAttention at 'mha'.*explicit"):
        to_snn(Net())


def test_an_in_place_activation_does_not_overwrite_the_accumulated_input():
    torch.manual_seed(4)
    qann = nn.Sequential(
        nn.Linear(4, 4), QReLU(4, 0.5), nn.Linear(4, 4), nn.SiLU(inplace=True),
        nn.Linear(4, 4), QReLU(4, 0.5), nn.Linear(4, 2),
    ).double()  # fmt: skip
    x = torch.randn(5, 4, dtype=torch.float64)
    _, snn = assert_equivalent(qann, x)
    assert snn.operators["3"] == "accumulating"


def _energy(qann: nn.Module, x: torch.Tensor, timesteps: int = 8) -> dict:
    from spikezip.snn.energy import EnergyMeter

    snn = to_snn(qann).double()
    meter = EnergyMeter(snn, tuple(x.shape[1:]), timesteps)
    meter.begin_batch(x, {})
    snn.run(x, timesteps, on_step=meter.on_step)
    return meter.result(ann_flops_per_inference=1)


def _identity_then(*layers: nn.Module) -> nn.Sequential:
    first = nn.Linear(2, 2, bias=False)
    last = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.eye(2))
        last.weight.fill_(1.0)
    return nn.Sequential(first, *layers, last).double()


# Input [2.6, 0] released as 0.65 on steps 1..4 into ST-BIF (Vthr 1, V0 0.5): the first
# neuron spikes at steps 1, 3 and 4 (V 1.15, 1.45, 1.1), the second never.
_X = torch.tensor([[2.6, 0.0]], dtype=torch.float64)


def test_a_graded_spike_costs_a_multiply_accumulate_per_synapse():
    energy = _energy(_identity_then(QReLU(4, 1.0), nn.GELU()), _X)
    assert energy["sop"][-1] == 0.0  # no unit spikes
    assert energy["graded_flops"][-1] == 3 * 3 * 2  # 3 spikes x fan-out 3 x 2 FLOPs
    assert energy["accumulating_flops"][-1] == 0.0 and energy["accumulating_share"] == 0.0


def test_an_accumulating_operator_costs_dense_work_where_its_input_changed():
    energy = _energy(_identity_then(QReLU(4, 1.0), nn.Softmax(-1)), _X)
    # Evaluated at steps 1, 3 and 4 (its input changed): 2 output elements each (the
    # counter gives softmax no FLOPs of its own), and both outputs change each time,
    # driving 2 x 3 multiply-accumulates (12 FLOPs).
    assert energy["accumulating_flops"][-1] == 3 * 2 + 3 * 12
    assert energy["accumulating_flops"][1] == energy["accumulating_flops"][0] == 2 + 12
    assert energy["sop"][-1] == 0.0  # the spikes reach no synapse: the softmax reads them
    assert 0 < energy["accumulating_share"] < 1


# ---------------------------------------------------------------- to_qann ----


def _calibrated(qann: nn.Module, x: torch.Tensor) -> nn.Module:
    """LSQ's data init of every quantizer (one training-mode batch), then eval, float64."""
    with torch.no_grad():
        qann.train()(x)
    return qann.eval().double()


def test_to_qann_quantizes_a_vit_where_spikezip_tf_does_and_its_snn_is_exact():
    from spikezip.models.vit import vit

    torch.manual_seed(5)
    qann = to_qann(vit(num_classes=10, width=0.5, image_size=28, depth=2), 4)
    placed = {str(r).split(":")[0]: str(r) for r in qann.morph_report if "quantizer" in str(r)}
    block = [n for n in placed if n.startswith("blocks.0.")]
    # After LayerNorm (into qkv and the MLP), before the output projection, before GELU.
    assert block == ["blocks.0.attn.qkv_in", "blocks.0.attn.proj_in", "blocks.0.mlp.0_in",
                     "blocks.0.mlp.1_in"]  # fmt: skip
    assert "graded spikes" in placed["blocks.0.mlp.1_in"] and "head_in" in placed
    products = [v for n, v in placed.items() if n.startswith("matmul")]
    assert len(products) == 8 and sum("unsigned" in v for v in products) == 2  # Q, K, A, V x 2
    qann = _calibrated(qann, torch.randn(8, 1, 28, 28))
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    report, snn = assert_equivalent(qann, x)
    assert sum(isinstance(n, GradedNeuron) for n in snn.neurons.values()) == 2
    assert list(snn.operators.values()).count("accumulating") == 2 * 5 + 1  # 2 LN, 2 @, softmax
    sim = snn.run(x, 60)
    assert not torch.equal(sim.outputs[0], sim.final)


def test_multihead_attention_is_written_out_with_the_same_output():
    from spikezip.quant.placement import ExplicitAttention

    torch.manual_seed(6)
    for batch_first in (True, False):
        mha = nn.MultiheadAttention(8, 2, batch_first=batch_first).double().eval()
        x = torch.randn(3, 5, 8, dtype=torch.float64)
        expected = mha(x, x, x, need_weights=False)[0]
        got, weights = ExplicitAttention(mha)(x, x, x, need_weights=False)
        assert weights is None and torch.allclose(got, expected, atol=1e-12)


class _MHABlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.norm = nn.Linear(3, 8), nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.embed(x)
        h = self.norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return self.head(x.mean(1))


def test_a_network_with_multihead_attention_converts_exactly_after_to_qann():
    torch.manual_seed(7)
    qann = _calibrated(to_qann(_MHABlock(), 4), torch.randn(8, 5, 3))
    assert any("MultiheadAttention -> explicit" in str(r) for r in qann.morph_report)
    assert_equivalent(qann, torch.randn(4, 5, 3, dtype=torch.float64))


class _BiasedScores(nn.Module):
    """A product's output plus a parameter (Swin's relative position bias), then softmax."""

    def __init__(self):
        super().__init__()
        self.a, self.b = QReLU(4, 0.5, signed=True), QReLU(4, 0.5, signed=True)
        self.bias = nn.Parameter(torch.randn(3, 3))

    def forward(self, x):
        return (self.a(x) @ self.b(x).transpose(-2, -1) + self.bias).softmax(-1)


def test_a_constant_added_to_an_accumulating_output_is_released_and_the_output_is_not():
    torch.manual_seed(8)
    qann = _BiasedScores().double()
    report, snn = assert_equivalent(qann, torch.randn(4, 3, 2, dtype=torch.float64))
    releases = [m for n, m in snn.graph.named_modules() if type(m).__name__ == "ReleasedConstant"]
    assert len(releases) == 1  # the bias alone
