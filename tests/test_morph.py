"""to_qann: morphing ReLU -> Q-ReLU and max-pool -> avg-pool, and loud refusals."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikezip.models import resnet18
from spikezip.quant import QReLU, UnsupportedLayerError, to_qann


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
def test_unsupported_activation_names_path_and_type(act):
    with pytest.raises(UnsupportedLayerError, match=rf"{type(act).__name__} at '2'.*nn.ReLU"):
        to_qann(_net(act), 4)


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


@pytest.mark.parametrize(
    "model, match",
    [
        (_FunctionalReLU(), r"function 'relu'.*forward\(\)"),
        (_ClampReLU(), r"tensor method 'clamp'.*forward\(\)"),
        (_SharedReLU(), r"activation 'relu' is called at 2 places"),
    ],
)
def test_activations_hidden_from_module_swapping_are_refused(model, match):
    with pytest.raises(UnsupportedLayerError, match=match):
        to_qann(model, 4)


def test_torchvision_basic_block_shared_relu_is_refused():
    import torchvision

    with pytest.raises(UnsupportedLayerError, match=r"'layer1.0.relu' is called at 2 places"):
        to_qann(torchvision.models.resnet18(num_classes=3), 4)


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_bad_levels(bad):
    with pytest.raises(ValueError, match="levels must be a positive integer"):
        to_qann(_net(), bad)
