"""The model families beyond ReLU CNNs, converted exactly in float64: torchvision's ViT,
Swin, ConvNeXt, EfficientNet-B0 and MobileNetV3-S, timm's ViT-Tiny and DeiT-Tiny (small
image size, few blocks), through to_qann's quantizer placement and to_snn."""

import pytest
import torch
from conftest import calibrate, level_histogram
from test_convert import assert_equivalent
from torch import nn

from spikezip.quant import to_qann


def _torchvision(name: str) -> nn.Module:
    import torchvision.models as tvm
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.vision_transformer import VisionTransformer

    if name == "vit":
        vit = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                                num_classes=10)  # fmt: skip
        nn.init.normal_(vit.heads.head.weight, std=0.5)  # torchvision starts it at zero
        return vit
    if name == "swin":  # Swin-T's blocks (shifted windows), two stages of two, narrow
        from torchvision.models.swin_transformer import SwinTransformer

        return SwinTransformer([4, 4], 8, [2, 2], [2, 2], [4, 4], num_classes=10)
    if name == "convnext":  # ConvNeXt-T's blocks, two stages of one block, narrow
        return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=10)
    return {"efficientnet_b0": tvm.efficientnet_b0, "mobilenet_v3_small": tvm.mobilenet_v3_small}[
        name
    ](num_classes=10)


def _timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, img_size=32, patch_size=8, depth=2, num_classes=10)


MODELS = [
    pytest.param(lambda: _torchvision("vit"), id="torchvision-vit"),
    # Swin's attention is a torch.fx.wrap'ed helper with control flow on shapes: traced
    # with an example input (to_qann(..., example=x)), specialised to its size.
    pytest.param(lambda: _torchvision("swin"), id="torchvision-swin"),
    pytest.param(lambda: _torchvision("convnext"), id="torchvision-convnext"),
    # The slowest case; MobileNetV3 covers the same gates (SE, hardswish) in the fast suite.
    pytest.param(
        lambda: _torchvision("efficientnet_b0"),
        id="torchvision-efficientnet_b0",
        marks=pytest.mark.slow,
    ),  # fmt: skip
    pytest.param(lambda: _torchvision("mobilenet_v3_small"), id="torchvision-mobilenet_v3_small"),
    pytest.param(lambda: _timm("vit_tiny_patch16_224"), id="timm-vit_tiny_patch16_224"),
    pytest.param(lambda: _timm("deit_tiny_patch16_224"), id="timm-deit_tiny_patch16_224"),
]


@pytest.mark.parametrize("build", MODELS)
def test_a_model_beyond_relu_converts_exactly(build):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    model = build()
    example = x[:4].float() if type(model).__name__ == "SwinTransformer" else None
    qann = calibrate(to_qann(model, 4, example=example), x)
    used = {n: int((h > 0).sum()) for n, h in level_histogram(qann, x[:2]).items()}
    assert max(used.values()) >= 3, used  # real spiking, not silent layers
    report, snn = assert_equivalent(qann, x[:2])
    kinds = set(snn.operators.values())
    assert {"spiking", "linear", "accumulating"} <= kinds, kinds
    sim = snn.run(x[:2], 40)
    assert not torch.equal(sim.outputs[0], sim.final)  # a simulation: T=1 is not the end


def test_a_swin_from_the_registry_is_built_for_the_datas_input_size():
    # build_model then gives it an example_input of that size, which to_qann traces with
    # (built full size in tests/test_torchvision.py's slow pipeline runs).
    from spikezip.data.base import DatasetInfo
    from spikezip.models import architecture

    info = DatasetInfo(10, 3, 32)
    assert architecture("swin_t", info, library="torchvision")["image_size"] == 32
    assert "image_size" not in architecture("resnet18", info, library="torchvision")
