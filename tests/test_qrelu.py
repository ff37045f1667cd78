"""Q-ReLU: the exact rounding rule, clipping, LSQ gradients and data init."""

import math

import pytest
import torch

from spikezip.quant import QReLU, quantize


def test_forward_matches_formula_and_clips():
    q = QReLU(levels=4, scale=0.5)
    x = torch.tensor([-1.0, 0.1, 0.3, 0.6, 1.1, 1.9, 2.2, 10.0])
    # x/s + 0.5 = [-1.5, 0.7, 1.1, 1.7, 2.7, 4.3, 4.9, 20.5] -> floor, clip to [0, 4]
    assert q(x).tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_ties_round_half_up_not_half_to_even():
    s = 0.5
    # x / s + 0.5 is an exact integer: x / s = 0.5, 1.5, 2.5 are ties.
    x = torch.tensor([0.25, 0.75, 1.25], dtype=torch.float64)
    assert quantize(x, s, 8).tolist() == [1.0, 2.0, 3.0]
    # torch.round would give 0, 2, 2 (half to even): the rule that breaks SNN equivalence.
    assert torch.round(x / s).tolist() == [0.0, 2.0, 2.0]


def test_lsq_gradients_match_hand_computation():
    n, s = 4, 0.5
    x = torch.tensor([-0.3, 0.2, 0.55, 0.8, 1.7, 2.5], requires_grad=True)
    scale = torch.nn.Parameter(torch.tensor(s))
    q = QReLU(n, s)
    q.scale = scale
    up = torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0, -2.0])
    (q(x) * up).sum().backward()
    # v = x/s = [-0.6, 0.4, 1.1, 1.6, 3.4, 5.0]; q = floor(v + 0.5) clipped = [0, 0, 1, 2, 3, 4]
    # inside (0 < v < n): v = 0.4, 1.1, 1.6, 3.4 -> d/ds = q - v = -0.4, -0.1, 0.4, -0.4
    # outside: v = -0.6 -> q = 0; v = 5.0 -> q = n = 4
    local = [0.0, -0.4, -0.1, 0.4, -0.4, 4.0]
    g = 1 / math.sqrt(x.numel() * n)  # a 1-D input is one sample of 6 features
    expected = g * sum(u * d for u, d in zip(up.tolist(), local, strict=True))
    assert scale.grad.item() == pytest.approx(expected, rel=1e-6)
    assert x.grad.tolist() == [0.0, 2.0, -1.0, 0.5, 3.0, 0.0]


def test_grad_scale_uses_features_per_sample():
    n = 2
    x = torch.rand(5, 3, 4, 4) + 0.1
    q = QReLU(n, 10.0)  # large scale: everything inside, d/ds = q - v = -v
    q(x).sum().backward()
    expected = (-(x / 10.0)).sum() / math.sqrt(3 * 4 * 4 * n)
    assert q.scale.grad.item() == pytest.approx(expected.item(), rel=1e-5)


def test_scale_initialised_from_first_training_batch_only():
    q = QReLU(levels=4)
    x = torch.randn(64, 10)
    q.train()
    q(x)
    first = 2 * x.abs().mean() / math.sqrt(4)
    assert q.scale.item() == pytest.approx(first.item(), rel=1e-6)
    q(10 * x)  # a second batch does not re-initialise
    assert q.scale.item() == pytest.approx(first.item(), rel=1e-6)
    assert bool(q.initialized)


def test_given_scale_is_not_reinitialised_and_survives_state_dict():
    q = QReLU(levels=3, scale=0.7)
    q.train()
    q(torch.randn(8, 4))
    assert q.scale.item() == pytest.approx(0.7)
    fresh = QReLU(levels=3)
    fresh.load_state_dict(q.state_dict())
    fresh.train()
    fresh(100 * torch.randn(8, 4))
    assert fresh.scale.item() == pytest.approx(0.7)


def test_training_and_eval_forward_are_identical():
    q = QReLU(levels=5, scale=0.37)
    x = torch.randn(1000, dtype=torch.float64)
    q.double()
    q.train()
    a = q(x)
    q.eval()
    assert torch.equal(a, q(x))


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "8"])
def test_bad_levels_rejected(bad):
    with pytest.raises(ValueError, match="levels"):
        QReLU(bad)


def test_bad_scale_rejected():
    with pytest.raises(ValueError, match="scale"):
        QReLU(4, scale=-1.0)
