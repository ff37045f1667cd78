"""Model definitions: shapes, torchvision-compatible names, RCR topology."""

import pytest
import torch
import torchvision
from torch import nn

from spikezip.models import resnet18, resnet20, resnet34, small_cnn, vgg16


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: resnet18(), torchvision.models.resnet18),
        (lambda: resnet34(rcr=True), torchvision.models.resnet34),
        # 138M parameters built twice (~4 s): test-all; the ResNets check the mechanism.
        pytest.param(lambda: vgg16(), torchvision.models.vgg16_bn, marks=pytest.mark.slow),
    ],
)
def test_torchvision_weights_load_strictly(ours, theirs):
    reference = theirs()
    model = ours()
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval(), reference.eval()
    if not getattr(model, "rcr", False):  # same function too (RCR changes the topology)
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: resnet20(num_classes=100, width=0.25), (2, 3, 32, 32)),
        (lambda: resnet20(num_classes=100, rcr=True, width=0.25), (2, 3, 32, 32)),
        (lambda: resnet18(num_classes=100, width=0.125), (2, 3, 64, 64)),
        (lambda: vgg16(num_classes=100, variant="cifar", width=0.125), (2, 3, 32, 32)),
        (lambda: vgg16(num_classes=100, width=0.0625), (1, 3, 224, 224)),
        (lambda: small_cnn(num_classes=100), (2, 1, 28, 28)),
        (lambda: small_cnn(num_classes=100, image_size=8), (2, 1, 8, 8)),
    ],
)
def test_output_shape(build, shape):
    assert build()(torch.randn(shape)).shape == (shape[0], 100)


def test_resnet20_layout():
    model = resnet20()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # 1 stem + 18 block convs + 2 conv shortcuts (the stride-2 stages)
    assert len(convs) == 21
    assert model.fc.in_features == 64


def test_rcr_moves_add_after_the_neuron_and_adds_shortcut_neuron():
    block = resnet20(rcr=True).layer2[0]
    assert isinstance(block.downsample[2], nn.ReLU)
    plain = resnet20(rcr=False).layer2[0]
    assert len(plain.downsample) == 2
    # RCR: the block is the sum of two activated branches, with no activation on the sum.
    x = torch.randn(2, 16, 8, 8)
    block.eval()
    with torch.no_grad():
        branch = block.relu2(block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x))))))
        torch.testing.assert_close(block(x), branch + block.downsample(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        resnet20(width=0)
    with pytest.raises(ValueError, match="variant"):
        vgg16(variant="mnist")
    with pytest.raises(ValueError, match="divisible by 4"):
        small_cnn(image_size=30)


def test_pretrained_loads_torchvision_weights(monkeypatch):
    from torchvision.models._api import WeightsEnum

    reference = torchvision.models.resnet18()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **kw: reference.state_dict())
    model = resnet18(pretrained=True)
    torch.testing.assert_close(model.fc.weight, reference.fc.weight)


def test_pretrained_offline_is_a_clear_error(monkeypatch):
    from urllib.error import URLError

    from torchvision.models._api import WeightsEnum

    def offline(self, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"could not fetch torchvision's resnet34 weights"):
        resnet34(pretrained=True)
    with pytest.raises(RuntimeError, match="num_classes=1000 and width=1.0"):
        monkeypatch.setattr(
            WeightsEnum,
            "get_state_dict",
            lambda self, **kw: torchvision.models.vgg16_bn().state_dict(),
        )
        vgg16(num_classes=10, pretrained=True)
