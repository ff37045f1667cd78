"""Paths-ensemble training: eq. 4 and 5, the sharing schemes, the loss (eq. 6), export."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import calibrate
from torch import nn

from spikezip.models import resnet20, small_cnn
from spikezip.pet import (
    EnsembleLoss,
    PathBatchNorm,
    PathQReLU,
    PETConfig,
    backward_paths,
    to_pet,
)
from spikezip.quant import QReLU, to_qann
from spikezip.snn import check_equivalence, to_snn


def _one_neuron(scale: float = 0.25) -> nn.Sequential:
    fc = nn.Linear(1, 1)
    with torch.no_grad():
        fc.weight.fill_(1.0)
        fc.bias.zero_()
    return nn.Sequential(fc, QReLU(8, scale)).double()


def test_each_path_quantizes_as_eq4_on_one_neuron():
    s, levels = 0.25, [8, 4, 2]
    pet = to_pet(_one_neuron(s), levels)
    x = torch.linspace(-0.5, 3.0, 141, dtype=torch.float64).unsqueeze(1)
    for i, n in enumerate(levels):
        step = levels[0] * s / n
        expected = step * torch.clamp(torch.floor(n * x / (levels[0] * s) + 0.5), 0, n)
        with pet.path(i):
            got = pet(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
        assert got.max().item() == pytest.approx(levels[0] * s)  # every path clips at n_mp*s
        assert len(torch.unique(got)) == n + 1


def test_default_path_is_the_major_one_and_bad_paths_are_refused():
    pet = to_pet(_one_neuron(), [8, 4])
    x = torch.tensor([[0.3]], dtype=torch.float64)
    with pet.path(0):
        major = pet(x)
    assert torch.equal(pet(x), major)
    with pytest.raises(IndexError, match="path 2 does not exist"), pet.path(2):
        pass


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return to_qann(small_cnn(width=0.25), 8)


def test_per_path_bn_statistics_diverge_while_gamma_beta_stay_shared():
    pet = to_pet(_bn_net(), [8, 4, 2])
    opt = torch.optim.SGD(pet.parameters(), lr=0.1)
    pet.train()
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    for _ in range(3):
        opt.zero_grad()
        sum(F.cross_entropy(out, y) for out in pet.forward_paths(x)).backward()
        opt.step()
    bn = pet.net.features[5]  # after the first Q-ReLU: its input differs per path
    assert isinstance(bn, PathBatchNorm)
    means = [norm.running_mean for norm in bn.norms]
    assert not torch.allclose(means[0], means[1]) and not torch.allclose(means[1], means[2])
    assert all(norm.weight is bn.norms[0].weight for norm in bn.norms)
    assert all(norm.bias is bn.norms[0].bias for norm in bn.norms)
    assert not torch.equal(bn.norms[0].weight, torch.ones_like(bn.norms[0].weight))  # trained


def test_every_path_sends_gradient_to_the_shared_weights_and_scale():
    pet = to_pet(_bn_net(), [8, 4, 2])
    pet.train()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    pet.forward_paths(x)  # LSQ init of the scale
    conv = pet.net.features[0]
    scale = pet.net.features[2].scales[0]
    for i in range(3):
        pet.zero_grad()
        with pet.path(i):
            F.cross_entropy(pet(x), y).backward()
        assert conv.weight.grad.abs().sum() > 0, f"path {i} does not reach the conv"
        assert scale.grad.abs() > 0, f"path {i} does not reach the shared scale"


def test_scale_init_from_major_path_data():
    pet = to_pet(_one_neuron(), [8, 4])
    qrelu = pet.net[1]
    qrelu.initialized.zero_()
    pet.train()
    x = torch.rand(64, 1, dtype=torch.float64) * 3
    pet(x)
    assert qrelu.scales[0].item() == pytest.approx((2 * x.abs().mean() / math.sqrt(8)).item())


@pytest.mark.parametrize("sharing", ["share", "identical", "independent"])
def test_scale_sharing_schemes(sharing):
    pet = to_pet(_one_neuron(0.25), [8, 4, 2], scale_sharing=sharing)
    q = pet.net[1]
    assert len(q.scales) == (3 if sharing == "independent" else 1)
    steps = [q.step(i).item() for i in range(3)]
    if sharing == "share":
        assert steps == [0.25, 0.5, 1.0]
    else:
        assert steps == [0.25, 0.25, 0.25]
    if sharing == "independent":
        with torch.no_grad():
            q.scales[2].fill_(0.7)
        assert [q.step(i).item() for i in range(3)] == pytest.approx([0.25, 0.25, 0.7])


@pytest.mark.parametrize("sharing", ["share", "identical", "independent"])
def test_bn_sharing_schemes(sharing):
    pet = to_pet(_bn_net(), [8, 4, 2], bn_sharing=sharing)
    bn = pet.net.features[5]
    params = {id(p) for norm in bn.norms for p in norm.parameters()}
    assert len(bn.norms) == (1 if sharing == "identical" else 3)
    assert len(params) == (6 if sharing == "independent" else 2)
    pet.train()
    x = torch.randn(8, 1, 28, 28)
    pet.forward_paths(x)
    assert bn.norms[0].num_batches_tracked.item() == (3 if sharing == "identical" else 1)


def test_exported_major_path_equals_path0_and_converts_exactly():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    qann = calibrate(to_qann(resnet20(width=0.25, rcr=True), 8), x)
    pet = to_pet(qann, [8, 4, 2]).double()
    pet.train()
    with torch.no_grad():
        pet.forward_paths(x)  # per-path statistics move away from the QANN's
    pet.eval()
    exported = pet.export_major_path()
    assert not any(isinstance(m, (PathQReLU, PathBatchNorm)) for m in exported.modules())
    assert all(m.levels == 8 for m in exported.modules() if isinstance(m, QReLU))
    with torch.no_grad(), pet.path(0):
        torch.testing.assert_close(exported(x), pet(x), rtol=0, atol=0)
        with pet.path(1):
            assert not torch.equal(exported(x), pet(x))
    report = check_equivalence(exported, to_snn(exported).double(), x)
    assert report.equivalent, report


def test_single_level_is_plain_qat():
    pet = to_pet(_bn_net(), [8])
    assert pet.num_paths == 1
    assert len(pet.forward_paths(torch.randn(4, 1, 28, 28))) == 1


def test_to_pet_refuses_an_ann_and_bad_options():
    with pytest.raises(ValueError, match=r"to_qann first \('features.2' is still a ReLU\)"):
        to_pet(small_cnn())
    with pytest.raises(ValueError, match="levels must be"):
        to_pet(_bn_net(), [8, 0])
    with pytest.raises(ValueError, match="scale_sharing='shared' is not valid"):
        to_pet(_bn_net(), scale_sharing="shared")
    with pytest.raises(ValueError, match="bn_sharing='x' is not valid"):
        to_pet(_bn_net(), bn_sharing="x")


# ------------------------------------------------------------------ the loss ----

LOGITS = [
    torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]),
    torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]]),
    torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 3.0]]),
]
TEACHER = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
TARGETS = torch.tensor([0, 1])


def _soft(logits, tau):
    p = torch.softmax(TEACHER / tau, -1)
    q = torch.softmax(logits / tau, -1)
    return float((p * (p.log() - q.log())).sum(-1).mean()) * tau**2


def _hard(logits):
    return float(-torch.log_softmax(logits, -1)[torch.arange(2), TARGETS].mean())


@pytest.mark.parametrize("main_label", ["soft", "hard", "mixed"])
@pytest.mark.parametrize("sub_label", ["soft", "hard", "mixed"])
@pytest.mark.parametrize("alpha, tau", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0)])
def test_loss_equals_hand_computed_value(main_label, sub_label, alpha, tau):
    def term(logits, label):
        return {
            "soft": _soft(logits, tau),
            "hard": _hard(logits),
            "mixed": _soft(logits, tau) + _hard(logits),
        }[label]

    levels = [8, 4, 2]
    expected = term(LOGITS[0], main_label) + alpha * (
        4 / 8 * term(LOGITS[1], sub_label) + 2 / 8 * term(LOGITS[2], sub_label)
    )
    config = PETConfig(
        levels=levels, alpha=alpha, sub_label=sub_label, main_label=main_label, temperature=tau
    )
    loss = EnsembleLoss(config)
    assert loss(LOGITS, TARGETS, TEACHER).item() == pytest.approx(expected, rel=1e-5)


def test_loss_errors():
    with pytest.raises(ValueError, match="needs the teacher"):
        EnsembleLoss(PETConfig(levels=[8]))(LOGITS[:1], TARGETS, None)
    with pytest.raises(ValueError, match="got 2 paths for levels"):
        EnsembleLoss()(LOGITS[:2], TARGETS, TEACHER)
    with pytest.raises(ValueError, match="sub_label='soft\\+hard' is not valid"):
        PETConfig(sub_label="soft+hard")
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        PETConfig(alpha=-1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        PETConfig(temperature=0)
    hard = EnsembleLoss(PETConfig(levels=[8], main_label="hard"))
    assert hard(LOGITS[:1], TARGETS).item() == pytest.approx(_hard(LOGITS[0]), rel=1e-6)


def test_path_by_path_backward_equals_the_joint_loss_gradient():
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    pet = to_pet(_bn_net(), [8, 4, 2]).double().train()
    teacher = torch.randn(16, 10, dtype=torch.float64)
    loss = EnsembleLoss(PETConfig(levels=[8, 4, 2], alpha=0.7, sub_label="mixed"))
    pet.forward_paths(x)  # LSQ init, so both runs below start from the same scales
    state = {k: v.clone() for k, v in pet.state_dict().items()}
    joint = loss(pet.forward_paths(x), y, teacher)
    joint.backward()
    expected = {n: p.grad.clone() for n, p in pet.named_parameters()}
    pet.load_state_dict(state)
    pet.zero_grad()
    result = backward_paths(pet, loss, x, y, teacher)
    assert result.loss.item() == pytest.approx(joint.item(), rel=1e-12)
    for name, param in pet.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], rtol=1e-10, atol=1e-12)
