"""The plain functions behind ``convert.py`` and ``evaluate.py`` (and the end of ``train.py``)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from spikezip.artifacts import load_qann, save_snn
from spikezip.plots import (
    write_accuracy_curve,
    write_energy_plot,
    write_feature_maps,
    write_json,
    write_t_eq_histogram,
)
from spikezip.snn import SpikingNetwork, check_equivalence, evaluate_snn, to_snn
from spikezip.snn.energy import EnergyMeter, FeatureMapMeter, ann_flops

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(accelerator: str) -> torch.device:
    """Where to simulate for a trainer ``accelerator``: CUDA for gpu / cuda / auto when
    present; an explicit gpu request without CUDA is an error, not a silent CPU run."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("gpu", "cuda"):
        raise RuntimeError(f"trainer.accelerator={accelerator} but CUDA is not available")
    return torch.device("cpu")


class NotEquivalentError(RuntimeError):
    """The converted SNN does not reproduce its QANN; no SNN file was written."""


def convert(
    qann: nn.Module,
    metadata: dict,
    out_dir: str | Path,
    encoding: str = "even",
    sample: Tensor | None = None,
    max_timesteps: int = 1000,
) -> dict:
    """Convert ``qann`` and prove it on ``sample`` in float64 (default: 16 validation images
    of the dataset in ``metadata["data"]``, else 16 seeded random inputs). Writes
    ``equivalence.json`` always and ``snn.pt`` only if equivalent.

    Raises:
        NotEquivalentError: the report says the SNN differs; the message says where.
    """
    out_dir = Path(out_dir)
    inputs = "given"
    if sample is None:
        sample, inputs = _sample_inputs(metadata)
    snn = to_snn(qann, encoding)
    # The proof runs on (a float64 copy of) the very SNN that is saved.
    report = check_equivalence(
        copy.deepcopy(qann).double().eval(),
        copy.deepcopy(snn).double(),
        sample.double(),
        max_timesteps,
    )
    result = {
        "equivalent": report.equivalent,
        "encoding": encoding,
        "inputs": inputs,
        **report.to_dict(),
    }
    write_json(result, out_dir / "equivalence.json")
    if not report.equivalent:
        raise NotEquivalentError(
            f"the SNN is not equivalent to the QANN, snn.pt not written:\n{report}\n"
            f"(full report in {out_dir / 'equivalence.json'})"
        )
    save_snn(snn, qann, out_dir / "snn.pt", metadata)
    return result


def _sample_inputs(metadata: dict, count: int = 16) -> tuple[Tensor, str]:
    """Validation images of the QANN's dataset if they can be loaded, else random inputs."""
    from spikezip.data import DatasetNotFoundError, build_datasets

    data = metadata.get("data")
    if data:
        try:
            _, val, _ = build_datasets(data["name"], data["root"], False, False, data["seed"])
            images = [val[i][0] for i in range(min(count, len(val)))]
            return torch.stack(images), f"{data['name']} validation images"
        except DatasetNotFoundError:
            pass  # e.g. converting on a machine without the dataset: random inputs below
    gen = torch.Generator().manual_seed(0)
    return torch.randn(count, *metadata["input_shape"], generator=gen), "random normal"


def convert_file(qann_path: str | Path, out_dir: str | Path | None = None, **kwargs) -> dict:
    """:func:`convert` for a ``qann.ckpt``; output next to it unless ``out_dir`` is given."""
    qann, metadata = load_qann(qann_path)
    return convert(qann, metadata, out_dir or Path(qann_path).parent, **kwargs)


def evaluate(
    snn: SpikingNetwork,
    qann: nn.Module,
    metadata: dict,
    batches: Iterable,
    out_dir: str | Path,
    timesteps: int = 32,
    max_timesteps: int = 256,
    limit_batches: int | None = None,
    joules_per_sop: float = 77e-15,
    joules_per_flop: float = 12.5e-12,
    feature_maps: bool = False,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Accuracy at every T (one simulation per batch), QANN accuracy, agreement, T_eq,
    energy and optionally feature-map distances; writes ``snn_eval.json``,
    ``acc_vs_timestep.csv/png``, ``t_eq_hist.png``, ``energy.png`` (and
    ``feature_maps.csv/png``) in ``out_dir``. Returns the ``snn_eval.json`` content."""
    out_dir = Path(out_dir)
    torch_dtype = DTYPES[dtype]
    snn, qann = snn.to(device, torch_dtype), qann.to(device, torch_dtype).eval()
    input_shape = tuple(metadata["input_shape"])
    meter = EnergyMeter(snn, input_shape, timesteps, joules_per_sop, joules_per_flop)
    observers: list = [meter]
    maps = FeatureMapMeter(snn, timesteps) if feature_maps else None
    if maps is not None:
        observers.append(maps)
    result = evaluate_snn(
        snn, qann, batches, timesteps, max_timesteps, limit_batches, device, progress, observers
    )
    summary = {
        "qann_accuracy": result.qann_accuracy,
        "snn_accuracy": result.snn_accuracy,
        "t_eq_mean": result.t_eq_mean if len(result.settled) else None,  # JSON has no NaN
        "t_eq_max": result.t_eq_max,
        "agreement": result.agreement,
        "samples": result.samples,
        "settled": int(len(result.settled)),
        "timesteps": timesteps,
        "encoding": snn.encoding,
        "dtype": dtype,
        "energy": meter.result(ann_flops(qann, input_shape), snn.release_steps),
    }
    if maps is not None:
        summary["feature_maps"] = maps.result()
        write_feature_maps(summary["feature_maps"], out_dir)
    write_accuracy_curve(result.snn_accuracy, out_dir, result.qann_accuracy)
    write_t_eq_histogram(result.t_eq.tolist(), out_dir / "t_eq_hist.png")
    write_energy_plot(summary["energy"], out_dir / "energy.png")
    write_json(summary, out_dir / "snn_eval.json")
    return summary


def evaluate_file(cfg) -> dict:
    """:func:`evaluate` of an ``snn.pt`` on a dataset, from an ``evaluate.py`` config."""
    from torch.utils.data import DataLoader

    from spikezip.artifacts import load_snn
    from spikezip.config import ConfigError, _choice, _positive
    from spikezip.data import DATASETS, build_datasets
    from spikezip.snn.convert import ENCODINGS

    _choice("data.name", cfg.data.name, DATASETS)
    _choice("snn.dtype", cfg.snn.dtype, tuple(DTYPES))
    _choice("snn.encoding", cfg.snn.encoding, ENCODINGS)
    _positive("snn.timesteps", cfg.snn.timesteps)
    _positive("snn.max_timesteps", cfg.snn.max_timesteps)
    _positive("snn.eval_batches", cfg.snn.eval_batches, allow_none=True)
    snn, qann, metadata = load_snn(cfg.snn.path)
    d = cfg.data
    _, val, info = build_datasets(d.name, d.root, d.download, False, d.seed)
    shape = [info.in_channels, info.image_size, info.image_size]
    if shape != list(metadata["input_shape"]):
        raise ConfigError(
            f"{cfg.snn.path} takes inputs {metadata['input_shape']} but data={d.name} gives "
            f"{shape}: pass the dataset it was trained on"
        )
    out_dir = cfg.out_dir or Path(cfg.snn.path).parent / f"eval_{d.name}"
    if cfg.snn.encoding != snn.encoding:  # the same QANN, released the other way: exact too
        snn = to_snn(qann, cfg.snn.encoding)
    return evaluate(
        snn, qann, metadata, DataLoader(val, d.eval_batch_size), out_dir,
        cfg.snn.timesteps, cfg.snn.max_timesteps, cfg.snn.eval_batches,
        cfg.snn.energy.joules_per_sop, cfg.snn.energy.joules_per_flop, cfg.snn.feature_maps,
        cfg.snn.dtype, resolve_device(cfg.trainer.accelerator), cfg.trainer.enable_progress_bar,
    )  # fmt: skip
