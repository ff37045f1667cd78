"""Integer SNNs (pet.weight_bits): the grid, the integer QANN, bit-exactness, the export
and its NumPy reference simulator, NIR export of IF networks."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import realistic_qann
from torch import nn

from spikezip.export import ExportError, export_integer
from spikezip.export import reference as numpy_snn
from spikezip.models import resnet20, small_cnn
from spikezip.pet.paths import export_network, to_pet
from spikezip.quant import QReLU, to_qann
from spikezip.quant.integer import IntQReLU, PixelLevels, Pixels, grid, integerize
from spikezip.quant.morph import morph
from spikezip.snn import check_equivalence, to_snn
from spikezip.snn.encoding import Release
from spikezip.snn.hardware import measure_hardware
from spikezip.tracing import UnsupportedLayerError

PIXELS = {"mean": [0.25], "std": [0.5], "max": 16}  # 8x8 images of 0..16 (like digits)
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _images(n: int, seed: int = 0) -> torch.Tensor:
    p = torch.randint(0, 17, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
    return ((p / 16.0 - 0.25) / 0.5).float()


def _integer_qann(bits: int, seed: int = 0, model: str = "small"):
    torch.manual_seed(seed)
    x = _images(32, seed)
    net = (
        small_cnn(10, 1, 8, width=0.5)
        if model == "small"
        else resnet20(10, width=0.25, in_channels=1)
    )
    qann = realistic_qann(net, 8, x.double(), seed)
    pet = to_pet(qann.float(), [8, 4, 2]).eval()
    pet.use_weight_grids(bits, PIXELS, (1, 8, 8))
    return export_network(pet), pet


def test_the_grid_makes_every_threshold_a_whole_number_of_weight_units():
    torch.manual_seed(0)
    v = torch.randn(6, 4, 3, 3) * torch.rand(6, 1, 1, 1)
    s_out = torch.tensor(0.7)
    for bits in (2, 4, 8):
        step, m = grid(v, bits, s_out)
        assert torch.equal(m, torch.floor(m)) and bool((m >= 1).all())
        assert torch.allclose(step * m, s_out.expand(6))  # threshold s_out = m whole steps
        k = (v / step.view(-1, 1, 1, 1)).abs().flatten(1).amax(1)
        # Never clipped, but where one step is the whole threshold (m = 1): weights
        # larger than the grid's top then clip, in training and in integers alike.
        assert bool((m[k > 2 ** (bits - 1) - 1 + 1e-9] == 1).all())
    step, m = grid(v, 8, None)  # an output layer: one step for every channel
    assert m is None and torch.equal(step, step[:1].expand(6))


def test_integer_shares_are_whole_and_sum_to_the_total():
    release = Release(8, integer=True)
    total = torch.tensor([-17.0, -1.0, 0.0, 3.0, 8.0, 255.0, 1001.0], dtype=torch.float64)
    shares = torch.stack([release.portion(total, t) for t in range(1, 9)])
    assert torch.equal(shares, torch.floor(shares)) and torch.equal(shares.sum(0), total)
    assert float((shares.max(0).values - shares.min(0).values).max()) <= 1  # evenly


@pytest.mark.parametrize("bits", [8, 4])
def test_an_integer_snn_is_bit_exact_to_its_integer_qann(bits):
    iqann, pet = _integer_qann(bits)
    assert iqann.weight_bits == bits and isinstance(iqann.get_submodule("pixels"), PixelLevels)
    for name, m in iqann.named_modules():
        if isinstance(m, IntQReLU):
            assert torch.equal(m.threshold, torch.floor(m.threshold)), name
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            assert torch.equal(w, torch.floor(w)) and float(w.abs().max()) <= 2 ** (bits - 1) - 1
    x = _images(24, seed=3).double()
    # The integer QANN is the grid-trained float network, biases rounded to their unit.
    agree = (iqann(x).argmax(1) == pet(x.float()).argmax(1)).double().mean()
    assert agree >= 0.9
    snn = to_snn(iqann)
    report = check_equivalence(iqann, snn, x)
    assert report.bit_exact and report.equivalent, str(report)
    # Membranes and tracers are integers; their bound fits int32 here.
    assert {(n.v.dtype, n.count.dtype) for n in snn.neurons.values()} == {(torch.int32,) * 2}
    assert report.levels_compared == 24 * sum(n.count[0].numel() for n in snn.neurons.values())
    assert report.outputs_differing == 0 and report.outputs_compared == 24 * 10
    hardware = measure_hardware(snn, x, (1, 8, 8), 64, "24 images")
    assert hardware["integer"] and hardware["weight_bits"] == bits
    # The first layer's bias map (one bias per position) is memory too.
    bias_map = iqann.get_buffer("features_0_bias_map").numel()
    assert hardware["network"]["weight_memory_bytes"] >= bias_map * iqann.bias_bits / 8
    # Each quantizer's bound covers its largest input: every input at its top level,
    # summed by the 2x2 pooling before the layer (4 inputs in each).
    conv = iqann.get_submodule("features.4").weight.detach()
    top = float((conv.abs().flatten(1).sum(1) * 8 * 4).max())
    assert iqann.get_submodule("features.6").register_bound > top
    for layer in hardware["layers"]:
        low, high = layer["membrane_integer"]["min"], layer["membrane_integer"]["max"]
        assert low <= 0 < high and 2 ** (layer["membrane_bits"] - 1) > max(-low, high)


def test_an_integer_qann_refuses_inputs_that_are_not_pixels_and_layers_it_cannot_place():
    iqann, _ = _integer_qann(8)
    with pytest.raises(ValueError, match="not made of integer pixels"):
        iqann(torch.randn(2, 1, 8, 8, dtype=torch.float64))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act = nn.Conv2d(1, 1, 3, padding=1), QReLU(4, 0.5)
            self.fc = nn.Linear(64, 3)

        def forward(self, x):
            return self.fc((self.act(self.conv(x)) + x).flatten(1))

    with pytest.raises(UnsupportedLayerError, match="an add after the neurons"):
        to_pet(Residual(), [4]).use_weight_grids(8, PIXELS, (1, 8, 8))
    pooled = [
        nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 4), QReLU(4, 0.5),
                      nn.Linear(4, 2)),
        nn.Sequential(nn.Conv2d(1, 2, 3), QReLU(4, 0.5), nn.AvgPool2d(2, ceil_mode=True),
                      nn.Flatten(), nn.Linear(18, 2)),
    ]  # fmt: skip
    for net, why in zip(pooled, ["through average pooling", "ceil_mode=True"], strict=True):
        with pytest.raises(UnsupportedLayerError, match=why):
            to_pet(net, [4]).use_weight_grids(8, PIXELS, (1, 8, 8))
    plan = {"weight_bits": 8, "pixels": PIXELS, "layers": {}}
    with pytest.raises(UnsupportedLayerError, match="no grid for"):
        integerize(to_qann(small_cnn(10, 1, 8), 8), plan, (1, 8, 8))
    assert Pixels.of(PIXELS).scale().item() == pytest.approx(1 / 8)


def test_a_residual_network_is_bit_exact():
    # ResNet-20: residual sums, identity shortcuts on the grid, adaptive pooling.
    iqann, _ = _integer_qann(8, model="resnet")
    assert iqann.plan["shortcuts"] and all(min(k) >= 1 for k in iqann.plan["shortcuts"].values())
    report = check_equivalence(iqann, to_snn(iqann), _images(4, seed=5).double())
    assert report.bit_exact and report.equivalent, str(report)


@pytest.mark.parametrize("model", ["small", pytest.param("resnet", marks=pytest.mark.slow)])
def test_the_export_runs_in_numpy_exactly_as_in_torch(model, tmp_path):
    # A plain CNN, and a ResNet-20 (its sums: the export's add).
    iqann, _ = _integer_qann(8, model=model)
    snn = to_snn(iqann)
    x = _images(5, seed=7)
    export_integer(snn, tmp_path / "integer", x, (1, 8, 8))
    assert {p.name for p in (tmp_path / "integer").iterdir()} == {
        "graph.json", "weights.npz", "expected.npz",
    }  # fmt: skip
    graph, arrays = numpy_snn.load(tmp_path / "integer")
    ops = {layer["op"] for layer in graph["layers"]}
    assert ops == ({"conv2d", "stbif", "sum_pool2d", "flatten", "linear"} | (
        {"add"} if model == "resnet" else set()))  # fmt: skip
    schema = json.loads((DOCS / "integer_export.schema.json").read_text())
    assert set(schema["required"]) <= set(graph)  # the documented format, its every op
    assert ops <= set(schema["properties"]["layers"]["items"]["properties"]["op"]["enum"])
    first = graph["layers"][0]["weight"]
    assert arrays[first].dtype == np.int64  # read as int64; stored int8
    with np.load(tmp_path / "integer" / "weights.npz") as stored:
        assert stored[first].dtype == np.int8
    sim = snn.run(x.double(), 64, keep=32)
    pixels = snn.input_map(x.double()).numpy().astype(np.int64)
    outputs, t_eq = numpy_snn.run(graph, arrays, pixels, 64)
    for t in (1, 2, 4, 8, 16, 32):
        assert np.array_equal(outputs[t - 1], sim.outputs[t - 1].numpy().astype(np.int64)), t
    assert np.array_equal(t_eq, sim.t_eq.numpy())
    at_eq = outputs[t_eq - 1, np.arange(len(t_eq))]
    assert np.array_equal(at_eq, sim.final.numpy().astype(np.int64))
    assert numpy_snn.check(tmp_path / "integer") == 0
    assert numpy_snn.main([str(tmp_path / "integer")]) == 0
    if model == "resnet":
        return
    # A float SNN has no integer export, and nothing is written for it.
    with pytest.raises(ExportError, match="only an integer SNN exports"):
        export_integer(to_snn(_float_net()), tmp_path / "float", x, (1, 8, 8))
    assert not (tmp_path / "float").exists()


def _float_net():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4), QReLU(4, 0.5), nn.Linear(4, 2)).eval()


@pytest.mark.parametrize("method", ["qcfs", "rate"])
def test_an_if_network_goes_to_nir_and_back(method, tmp_path):
    import nir

    from spikezip.baselines.qcfs import to_if_snn, to_qcfs
    from spikezip.baselines.rate import to_rate_snn
    from spikezip.export.nir import simulate_nir, write_nir

    torch.manual_seed(0)
    model = small_cnn(10, 1, 8, width=0.5).eval()
    if method == "qcfs":
        snn = to_if_snn(to_qcfs(model, 4).eval())
    else:
        model = morph(model).eval()
        names = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
        snn = to_rate_snn(model, {n: 0.5 + i / 10 for i, n in enumerate(names)})
    path = write_nir(snn, tmp_path / "snn.nir", (1, 8, 8))
    graph = nir.read(str(path))
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert {"Conv2d", "IF", "Scale", "Affine", "Flatten", "Input", "Output"} <= kinds
    neuron = next(n for n in graph.nodes.values() if type(n).__name__ == "IF")
    assert neuron.metadata["reset"] == "subtract" and neuron.metadata["fires_at"] == ">="
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    expected = snn.double().simulate(x, 12)
    assert torch.allclose(simulate_nir(graph, x, 12), expected, atol=1e-12)


def test_a_dropout_and_pooling_go_to_nir(tmp_path):
    import nir

    from spikezip.baselines.qcfs import to_if_snn, to_qcfs
    from spikezip.export.nir import simulate_nir, write_nir

    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(32, 3),
    )  # fmt: skip
    snn = to_if_snn(to_qcfs(model, 4).eval())
    graph = nir.read(str(write_nir(snn, tmp_path / "snn.nir", (1, 8, 8))))
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(simulate_nir(graph, x, 6), snn.double().simulate(x, 6), atol=1e-12)


def test_a_spikezip_snn_does_not_go_to_nir(tmp_path):
    from spikezip.export.nir import write_nir

    with pytest.raises(ExportError, match="ST-BIF neurons"):
        write_nir(to_snn(_float_net()), tmp_path / "snn.nir", (1, 8, 8))
    assert not (tmp_path / "snn.nir").exists()


def test_without_its_dataset_an_integer_network_is_proven_on_random_pixel_images(tmp_path):
    from spikezip.conversion import sample_inputs

    pixels = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "max": 255}
    metadata = {"data": {"name": "cifar10", "root": str(tmp_path)}, "input_shape": [3, 4, 4],
                "integer": {"pixels": pixels}}  # fmt: skip
    x, kind = sample_inputs(metadata, 5)
    assert kind == "random pixel" and x.shape == (5, 3, 4, 4)
    p = PixelLevels(Pixels.of(pixels))(x.double())  # refuses anything but pixel images
    assert p.min() >= 0 and p.max() <= 255 and len(p.unique()) > 50


def test_an_integer_qann_file_rebuilds_it_and_a_broken_plan_is_named(tmp_path):
    from spikezip.artifacts import load_qann, save_qann
    from spikezip.io import CheckpointError

    iqann, _ = _integer_qann(8)
    arch = {"name": "small", "num_classes": 10, "in_channels": 1, "image_size": 8, "width": 0.5}
    path = save_qann(iqann, tmp_path / "qann.ckpt", arch=arch, levels=8, input_shape=[1, 8, 8])
    again, meta = load_qann(path)
    x = _images(6, seed=2).double()
    assert meta["integer"]["weight_bits"] == 8 and torch.equal(again(x), iqann(x))
    payload = torch.load(path, weights_only=True)
    payload["integer"]["layers"].pop("features.4")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="integer plan does not fit.*features.4"):
        load_qann(path)
