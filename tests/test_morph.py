"""to_qann: morphing ReLU -> Q-ReLU and max-pool -> avg-pool, and loud refusals."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikezip.models import resnet18
from spikezip.quant import QReLU, UnsupportedLayerError, morph, to_qann


def _net(act: nn.Module | None = None) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        act if act is not None else nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def test_morph_swaps_relu_and_maxpool_on_a_copy():
    ann = _net()
    qann = to_qann(ann, levels=6, scale=0.25)
    assert isinstance(ann[2], nn.ReLU) and isinstance(ann[3], nn.MaxPool2d)  # untouched
    assert isinstance(qann[2], QReLU) and qann[2].levels == 6
    assert qann[2].scale.item() == 0.25
    pool = qann[3]
    assert isinstance(pool, nn.AvgPool2d)
    assert (pool.kernel_size, pool.stride, pool.padding) == (2, 2, 0)
    assert torch.equal(qann[0].weight, ann[0].weight)
    assert qann[0].weight is not ann[0].weight
    x = torch.rand(2, 1, 8, 8)
    qann(x)  # runs


def test_morph_keeps_pool_geometry_of_resnet_stem():
    qann = to_qann(resnet18(num_classes=5, width=0.125), levels=4)
    pool = qann.maxpool
    assert isinstance(pool, nn.AvgPool2d)
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert sum(isinstance(m, QReLU) for m in qann.modules()) == 1 + 2 * 8
    assert not any(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in qann.modules())


def test_adaptive_max_pool_becomes_adaptive_avg_pool():
    qann = to_qann(nn.Sequential(nn.ReLU(), nn.AdaptiveMaxPool2d(3)), 2)
    assert isinstance(qann[1], nn.AdaptiveAvgPool2d) and qann[1].output_size == 3


@pytest.mark.parametrize(
    "act", [nn.GELU(), nn.SiLU(), nn.LeakyReLU(), nn.Hardswish(), nn.Sigmoid(), nn.Tanh()]
)
def test_a_relu_only_morph_names_what_is_not_a_relu(act):
    # A rate-coded or QCFS conversion morphs ReLU networks only.
    with pytest.raises(UnsupportedLayerError, match=rf"{type(act).__name__} at '2'.*nn.ReLU"):
        morph(_net(act), lambda clip: QReLU(4), QReLU)


@pytest.mark.parametrize(
    "act", [nn.GELU(), nn.SiLU(), nn.LeakyReLU(), nn.Hardswish(), nn.Sigmoid(), nn.Tanh()]
)
def test_to_qann_puts_a_signed_quantizer_before_any_other_activation(act):
    qann = to_qann(_net(act), 4)
    quantizer = qann.get_submodule("2_in")
    assert isinstance(quantizer, QReLU) and quantizer.signed and quantizer.levels == 4
    assert "2_in: signed quantizer: graded spikes" in [str(r) for r in qann.morph_report][-1]
    assert type(qann.get_submodule("2")) is type(act)  # kept: its neuron's spikes carry it


def test_dilated_max_pool_refused():
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2, dilation=2))
    with pytest.raises(UnsupportedLayerError, match="MaxPool2d at '1'.*dilation"):
        to_qann(net, 4)


class _FunctionalReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.relu(self.fc(x))


class _ClampReLU(_FunctionalReLU):
    def forward(self, x):
        return self.fc(x).clamp(min=0)


class _SharedReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.relu = nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU()

    def forward(self, x):
        return self.relu(self.b(self.relu(self.a(x))))


class _InplaceAndPool(nn.Module):
    """x.relu_() changes x for its later readers; functional max-pool; GELU elsewhere."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y.relu_()
        return F.max_pool2d(y, 2).flatten(1) + torch.relu(y).mean((2, 3)).sum(1, keepdim=True)


@pytest.mark.parametrize(
    "model, match",
    [
        (_ClampReLU(), r"tensor method 'clamp'.*forward\(\)"),
        (nn.Sequential(nn.Linear(4, 4), nn.GELU()), r"GELU at '1' has no spiking equivalent"),
        (nn.Sequential(nn.Linear(4, 4), nn.Hardtanh()), r"Hardtanh at '1'"),  # not a clip at 0
        (nn.Sequential(nn.Linear(4, 4), nn.Softmax(1)), r"Softmax at '1' cannot be converted"),
        (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), r"LayerNorm at '1' cannot"),
    ],
)
def test_what_cannot_become_a_neuron_is_refused_with_its_place(model, match):
    # What a ReLU-only morph (rate coding, QCFS and the other rivals) refuses; to_qann
    # places quantizers around these instead (tests/test_operators.py).
    with pytest.raises(UnsupportedLayerError, match=match):
        morph(model, lambda clip: QReLU(4), QReLU)


@pytest.mark.parametrize(
    "model, report",
    [
        (_FunctionalReLU(), ["relu: function 'relu' (graph node 'relu') -> module ReLU"]),
        (_SharedReLU(), ["relu: called at 2 places: one module each ('relu_2' added)"]),
    ],
)
def test_hidden_activations_get_modules_and_are_reported(model, report, caplog):
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    with caplog.at_level("INFO", logger="spikezip.quant.morph"):
        qann = to_qann(model, 4096, scale=1e-3)  # fine steps, clip at 4.1: nearly the ReLU
    where, what = report[0].split(" -> ") if " -> " in report[0] else (report[0], "")
    assert str(qann.morph_report[0]).startswith(where) and str(qann.morph_report[0]).endswith(what)
    assert str(qann.morph_report[0]) in caplog.text
    assert sum(isinstance(m, QReLU) for m in qann.modules()) == (
        2 if "2 places" in report[0] else 1
    )
    # the graph computes what the original does, with each ReLU quantized
    reference = {k: v for k, v in model.state_dict().items()}
    assert all(torch.equal(qann.state_dict()[k], v) for k, v in reference.items())
    assert torch.allclose(qann(x), model(x), atol=1e-2)


def test_in_place_activation_and_functional_pool_keep_their_meaning():
    torch.manual_seed(1)
    model = _InplaceAndPool().eval()
    x = torch.randn(3, 1, 6, 6)
    morphed = morph(model)  # ReLUs kept (the rate method's morph): max-pool -> average
    reported = "; ".join(str(r) for r in morphed.morph_report)
    assert "tensor method 'relu_'" in reported and "function 'max_pool2d'" in reported
    y = torch.relu(model.conv(x))
    expected = F.avg_pool2d(y, 2).flatten(1) + y.mean((2, 3)).sum(1, keepdim=True)
    torch.testing.assert_close(morphed(x), expected)


def test_clipped_relus_become_q_relus_that_start_at_their_clip():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU6(), nn.Linear(4, 4), nn.Hardtanh(0.0, 2.0))
    qann = to_qann(net, 4)
    first, second = qann[1], qann[3]
    assert isinstance(first, QReLU) and isinstance(second, QReLU)
    assert (first.scale.item(), second.scale.item()) == (1.5, 0.5)  # clip / levels
    assert bool(first.initialized)
    assert [str(r) for r in qann.morph_report] == [
        "1: ReLU6 -> QReLU (clip now learned)",
        "3: Hardtanh -> QReLU (clip now learned)",
    ]
    with pytest.raises(UnsupportedLayerError, match="ReLU6 at '1' clips at 6"):
        morph(net)  # a rate-coded ReLU network has no clip


def test_torchvision_weights_load_into_the_morphed_network():
    import torchvision

    original = torchvision.models.resnet18(num_classes=3)
    qann = to_qann(original, 4)
    fresh = torchvision.models.resnet18(num_classes=3)  # other random weights
    missing, unexpected = to_qann(fresh, 4).load_state_dict(original.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(k.endswith((".scale", ".initialized")) for k in missing)
    reloaded = to_qann(fresh, 4)
    reloaded.load_state_dict(original.state_dict(), strict=False)
    for key, value in original.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    assert type(qann).__name__ == "ResNet" and "layer1.0.relu_2" in dict(qann.named_modules())


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_bad_levels(bad):
    with pytest.raises(ValueError, match="levels must be a positive integer"):
        to_qann(_net(), bad)
