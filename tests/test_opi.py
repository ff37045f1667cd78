"""OPI (Bu et al., AAAI 2022): the clipped-ReLU ANN, its IF neurons started at lambda / 2,
a run of train.py with method=opi, and the settings it leaves unused."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

import spikezip.lit.pipeline as pipeline
from spikezip.baselines.opi import INITIAL_THRESHOLD, ClipReLU, to_opi, to_opi_snn
from spikezip.config import ConfigError, register_configs
from spikezip.methods import METHODS
from spikezip.models import small_cnn
from spikezip.snn import IFNeuron

ROOT = Path(__file__).resolve().parents[1]
register_configs()


def _compose(overrides=()):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_the_activation_clips_at_its_threshold_and_learns_it():
    act = ClipReLU(threshold=2.0)
    x = torch.tensor([-1.0, 0.0, 0.3, 1.25, 2.0, 2.5, 7.0], requires_grad=True)
    out = act(x)
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.3, 1.25, 2.0, 2.0, 2.0])  # no floor
    out.sum().backward()
    # lambda's gradient: one per input at or above it; the input's: one inside the clip.
    assert act.threshold.grad.item() == 3.0
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert ClipReLU().threshold.item() == INITIAL_THRESHOLD  # the authors' TCL starts at 4


def test_to_opi_clips_every_relu_and_keeps_a_teachers_clip():
    opi = to_opi(small_cnn(width=0.25))
    acts = [m for m in opi.modules() if isinstance(m, ClipReLU)]
    assert len(acts) == 3 and all(a.threshold.item() == INITIAL_THRESHOLD for a in acts)
    assert not any(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in opi.modules())
    six = to_opi(nn.Sequential(nn.Linear(2, 2), nn.ReLU6()))
    assert [m.threshold.item() for m in six.modules() if isinstance(m, ClipReLU)] == [6.0]


def _one_neuron(threshold: float) -> nn.Module:
    # x -> 0.5 x + lambda / 8 -> clip(., 0, lambda) -> identity: the neuron's input is the
    # analog input and the bias, on every step.
    first, last = nn.Linear(1, 1), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        first.weight.fill_(0.5)
        first.bias.fill_(0.125 * threshold)
        last.weight.fill_(1.0)
    return nn.Sequential(first, ClipReLU(threshold), last).double()


@pytest.mark.parametrize("lam", [1.0, 2.0])
def test_the_snn_neuron_starts_at_half_its_threshold_and_resets_by_subtraction(lam):
    ann = _one_neuron(lam)
    snn = to_opi_snn(ann).double()
    (neuron,) = snn.neurons.values()
    assert isinstance(neuron, IFNeuron) and neuron.threshold.item() == lam
    x = torch.tensor([[0.5 * lam]], dtype=torch.float64)  # the neuron gets 0.375 lambda
    outputs = snn.simulate(x, 8)[:, 0, 0]  # accumulated: lambda * spikes so far
    spikes = torch.diff(outputs, prepend=outputs.new_zeros(1)) / lam
    # By hand, in units of lambda, V0 = 1/2, input 3/8 a step (exact in binary):
    #   V: 7/8, 10/8 -> spike (2/8), 5/8, 8/8 -> spike (0), 3/8, 6/8, 9/8 -> spike (1/8), 4/8
    assert spikes.tolist() == [0, 1, 0, 1, 0, 0, 1, 0]
    # From V0 = 0 it would be [0, 0, 1, 0, 0, 1, 0, 1]; reset to zero [0, 1, 0, 0, 1, 0, 0, 1];
    # firing only above (not at) the threshold [0, 1, 0, 0, 1, 0, 1, 0].
    assert neuron.v.item() == pytest.approx(0.5 * lam)  # 4/8 lambda after step 8
    with torch.no_grad():  # 3 spikes in 8 steps: the rate rounds the ANN's 0.375 lambda
        assert outputs[-1].item() / 8 == pytest.approx(ann(x).item())


def test_opi_is_an_approximate_single_ann_method():
    opi = METHODS["opi"]
    assert opi.exact is False and opi.ensemble is False and opi.calibrates is False
    assert opi.path_names([8]) == ["opi"]


def test_a_train_py_run_with_method_opi_finishes(tmp_path):
    summary = pipeline.train(
        _compose(["method=opi", "data=digits", "trainer=debug"]), tmp_path / "run"
    )
    equivalence = json.loads((tmp_path / "run" / "equivalence.json").read_text())
    assert equivalence["exact"] is False
    assert summary["method"] == "opi" and summary["exact"] is False
    assert (tmp_path / "run" / "snn_eval.json").is_file()


@pytest.mark.parametrize("levels", [["pet.levels=[4]"], ["pet.levels=[8,4]"]])
def test_quantization_levels_given_to_opi_are_refused(tmp_path, levels):
    with pytest.raises(ConfigError, match="this run would not use settings") as info:
        pipeline.train(_compose(["method=opi", "data=digits", "trainer=debug", *levels]), tmp_path)
    assert "method=opi clips its ReLUs without quantizing" in str(info.value)
    assert list(tmp_path.iterdir()) == []
