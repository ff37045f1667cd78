"""Bring your own model: torchvision classifiers, as torchvision builds them, convert exactly."""

import pytest
import torch
import torchvision
from conftest import calibrate

from spikezip.models import build_model
from spikezip.pet import to_pet
from spikezip.quant import QReLU, to_qann
from spikezip.snn import check_equivalence, to_snn

# (name, input side, what the morph must have rewritten); vgg11_bn (a 129M-parameter
# network, 1.6 GB in float64 with its SNN) and resnet50 (its ReLUs called at three places
# where resnet18's are at two, the same rewrite) run with -m slow.
CASES = [
    ("resnet18", 32, "called at 2 places"),
    ("squeezenet1_1", 64, None),
    pytest.param("resnet50", 32, "called at 3 places", marks=pytest.mark.slow),
    pytest.param("vgg11_bn", 32, None, marks=pytest.mark.slow),
    # a functional relu and ReLU6 stay covered fast by test_convert's and test_morph's tests
    pytest.param("densenet121", 32, "function 'relu'", marks=pytest.mark.slow),
    pytest.param("mobilenet_v2", 32, "ReLU6 -> QReLU", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, side, rewrite", CASES)
def test_torchvision_classifiers_are_exact_in_float64(name, side, rewrite):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=10)
    x = torch.randn(2, 3, side, side, dtype=torch.float64)
    qann = calibrate(to_qann(model, 4), x)
    report = "; ".join(str(r) for r in qann.morph_report)
    assert (rewrite in report) if rewrite else report == "", report
    snn = to_snn(qann).double()
    result = check_equivalence(qann, snn, x)
    assert result.equivalent and result.reached_equilibrium, result
    assert all(layer.max_abs_diff == 0.0 for layer in result.layers)
    relus = sum(isinstance(m, QReLU) for m in qann.modules())
    assert len(result.layers) == relus  # every call site is a neuron layer of its own


def test_pet_runs_on_a_morphed_torchvision_network():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 32, 32)
    pet = to_pet(to_qann(build_model("resnet18", library="torchvision", num_classes=5), 4), [4, 2])
    pet.train()
    outputs = pet.forward_paths(x)  # LSQ data init per path, per-path batch-norm
    assert [o.shape for o in outputs] == [(4, 5), (4, 5)] and not torch.equal(*outputs)
    sum(o.sum() for o in outputs).backward()
    assert pet.net.get_submodule("layer1.0.relu_2").scales[0].grad is not None
    qann = pet.export_major_path().double()
    report = check_equivalence(qann, to_snn(qann).double(), x.double())
    assert report.equivalent, report


# Every family, built as its library defines it, through the whole run: full size (vit_b_16
# has 86M parameters; ResNet-18 alone takes ~12 s), so in test-all; the fast suite proves
# their conversion on narrow versions (tests/test_zoo_exact.py, the classifiers above) and
# runs PET on a morphed torchvision network. Swin is traced with the data's input size.
ZOO = [
    pytest.param(library, name, marks=pytest.mark.slow)
    for library, name in [
        ("torchvision", "resnet18"),
        ("torchvision", "vit_b_16"), ("torchvision", "swin_t"),
        ("torchvision", "convnext_tiny"), ("torchvision", "efficientnet_b0"),
        ("torchvision", "mobilenet_v3_small"), ("timm", "vit_tiny_patch16_224"),
        ("timm", "deit_tiny_patch16_224"),
    ]
]  # fmt: skip


@pytest.mark.parametrize("library, name", ZOO)
def test_model_torchvision_runs_the_whole_pipeline(tmp_path, monkeypatch, library, name):
    import json
    from pathlib import Path

    import torchvision.datasets.cifar as cifar
    from hydra import compose, initialize_config_dir
    from test_data import _write_cifar

    from spikezip.config import register_configs
    from spikezip.lit.pipeline import train

    _write_cifar(tmp_path / "data", "cifar10", n=8)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)  # tiny files
    register_configs()
    overrides = [f"model={library}", f"model.name={name}", "data=cifar10",
                 f"data.root={tmp_path / 'data'}", "data.batch_size=8", "data.eval_batch_size=8",
                 "trainer=debug", "pet.levels=[4,2]"]  # fmt: skip
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base=None):
        cfg = compose("train", overrides=overrides)
    run = tmp_path / "run"
    train(cfg, run)
    assert json.loads((run / "equivalence.json").read_text())["equivalent"]
    report = json.loads((run / "snn_eval.json").read_text())
    assert report["agreement"] == 1.0 and report["samples"] == 8
