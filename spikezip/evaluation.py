"""Evaluate an SNN on a dataset at every time-step and write its report: what
``evaluate.py`` does, and the last stage of ``train.py``.

The report (``snn_eval.json``, ``acc_vs_timestep.csv/png`` (a detector's
``map_vs_timestep.csv/png``), ``t_eq_hist.png``,
``energy.png``, ``hardware.json/png``, optionally ``feature_maps.csv/png``) is built from sums that
``reduce_sum`` adds over processes, so every process may hold part of the data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from spikezip.artifacts import load_snn
from spikezip.config import ConfigError, DType, EvaluateConfig, SimulationConfig, validate
from spikezip.data import DatasetNotFoundError, build_datasets
from spikezip.distributed import init_from_env, is_rank_zero, reduce_sum, shard
from spikezip.io import read_json, write_csv, write_json
from spikezip.methods import method_of
from spikezip.plots import (
    plot_curve,
    plot_energy,
    plot_feature_maps,
    plot_hardware,
    plot_t_eq_histogram,
)
from spikezip.quant.integer import is_integer
from spikezip.snn import SpikingNetwork, measure_snn
from spikezip.snn.energy import EnergyMeter, ann_flops
from spikezip.snn.equivalence import NotEquivalentError, prove_bit_exact
from spikezip.snn.feature_maps import FeatureMapMeter
from spikezip.snn.hardware import HardwareMeter, format_hardware
from spikezip.snn.measure import Curve, ReduceSum
from spikezip.tasks import Report, task_for, write_report

log = logging.getLogger(__name__)


def write_curve(curve: Curve, out_dir: str | Path) -> None:
    """``<stem>.csv`` (columns ``timestep`` and the score, e.g. ``accuracy``) and its PNG."""
    out_dir = Path(out_dir)
    rows = [(t, f"{v:.6f}") for t, v in zip(curve.timesteps, curve.values, strict=True)]
    write_csv(out_dir / f"{curve.stem}.csv", ["timestep", curve.key], rows)
    plot_curve(
        curve.timesteps, curve.values, out_dir / f"{curve.stem}.png", curve.reference, curve.name
    )


def _write_feature_maps(distances: dict[str, list[float]], out_dir: Path) -> None:
    names = list(distances)
    steps = len(next(iter(distances.values()), []))
    rows = [[t + 1, *(f"{distances[n][t]:.6g}" for n in names)] for t in range(steps)]
    write_csv(out_dir / "feature_maps.csv", ["timestep", *names], rows)
    plot_feature_maps(distances, out_dir / "feature_maps.png")


def evaluation_batches(dataset: Dataset, batch_size: int, eval_batches: int | None) -> DataLoader:
    """This process's batches of the samples an evaluation measures: the first
    ``eval_batches * batch_size`` samples (all if None), shared out between the processes
    without duplicates (:func:`spikezip.distributed.shard`), so the samples measured do
    not depend on how many processes measure them."""
    limit = None if eval_batches is None else eval_batches * batch_size
    return DataLoader(shard(dataset, limit), batch_size)


def evaluate_snn(
    snn: SpikingNetwork,
    qann: nn.Module,
    metadata: dict,
    batches: Iterable,
    out_dir: str | Path,
    settings: SimulationConfig,
    *,
    dtype: DType = DType.float32,
    device: str | torch.device = "cpu",
    progress: bool = True,
    reduce_sum: ReduceSum | None = None,
    write: bool = True,
    ann: nn.Module | None = None,
    max_accuracy_drop: float | None = None,
) -> Report:
    """Measure ``snn`` on ``batches`` (all of them; see :func:`evaluation_batches`) at
    every T, one simulation per batch: the task's score (accuracy, or a detector's mAP)
    and the QANN's, agreement with it, T_eq, energy and, with ``settings.feature_maps``,
    feature-map distances. With ``ann`` (the QANN's full-precision teacher) also its score
    on the same samples, and a warning when the QANN is more than ``max_accuracy_drop``
    below it. ``reduce_sum`` adds the
    sums over processes (None: one process); only the process with ``write`` writes the
    report into ``out_dir``. Returns the report (``snn_eval.json``).
    """
    out_dir = Path(out_dir)
    integer = is_integer(qann)
    if integer and dtype is not DType.float64:
        # Integers are exact in float64 (below 2**53); float32 would round large sums.
        log.info("an integer SNN: integer membranes, its layers in float64 (exact integers)")
        dtype = DType.float64
    snn, qann = snn.to(device, dtype.torch), qann.to(device, dtype.torch).eval()
    snn.use_backend(settings.backend)
    input_shape = tuple(metadata["input_shape"])
    timesteps = settings.timesteps
    energy = EnergyMeter(snn, input_shape, timesteps, settings.energy)
    maps = FeatureMapMeter(snn, timesteps) if settings.feature_maps else None
    hardware = HardwareMeter(snn)
    meters = [energy, hardware] if maps is None else [energy, hardware, maps]
    task = task_for(metadata["arch"])
    totals = measure_snn(
        snn,
        qann,
        batches,
        timesteps=timesteps,
        max_timesteps=settings.max_timesteps,
        device=device,
        progress=progress,
        meters=meters,
        task=task,
        ann=ann.to(device, dtype.torch) if ann is not None else None,
    )
    if reduce_sum is not None:
        totals.all_reduce(reduce_sum)
        for meter in meters:
            meter.all_reduce(reduce_sum)
    if totals.count == 0:
        raise DatasetNotFoundError("the validation data is empty: there is nothing to measure")
    t_eq = {t: int(n) for t, n in enumerate(totals.t_eq_counts.tolist()) if n}
    method = method_of(metadata.get("method"))
    report = task.report_type(
        method=method.name,
        exact=method.exact,
        **totals.report(),  # the task's scores: accuracy or mAP, per T, ANN and QANN
        t_eq_mean=totals.t_eq_mean if totals.settled else None,  # JSON has no NaN
        t_eq_max=totals.t_eq_max,
        samples=totals.count,
        settled=totals.settled,
        t_eq_counts={str(t): n for t, n in t_eq.items()},
        timesteps=timesteps,
        encoding=snn.encoding.value,
        overhead_steps=snn.overhead,
        dtype=dtype.value,
        energy=energy.result(ann_flops(getattr(qann, "source", qann), input_shape)),
        feature_maps=maps.result() if maps is not None else None,
    )
    if integer:  # bit for bit, every level of every sample (a second, shorter pass)
        report.bit_exact = prove_bit_exact(
            qann, snn, batches, settings.max_timesteps, device, reduce_sum, progress
        )
    resources = hardware.result(
        input_shape,
        report.t_eq_counts,
        totals.settled,
        report.energy["sop_per_layer"],
        inputs=f"{totals.count} evaluation samples",
    )
    if write:
        log.info("hardware resources (hardware.json):\n%s", format_hardware(resources))
    report.warnings = _warnings(report, max_accuracy_drop)
    if integer and not report.bit_exact["bit_exact"]:
        proof = report.bit_exact
        raise NotEquivalentError(
            f"the integer SNN is not bit-exact on the evaluation samples: "
            f"{proof['levels_differing']} of {proof['levels_compared']} neuron levels and "
            f"{proof['outputs_differing']} of {proof['outputs_compared']} outputs differ, "
            f"{proof['unsettled']} samples did not settle; no report written"
        )
    for warning in report.warnings:
        log.warning(warning)
    if write:
        if maps is not None:
            _write_feature_maps(report.feature_maps, out_dir)
        write_curve(report.curve(), out_dir)
        plot_t_eq_histogram(t_eq, totals.count - totals.settled, out_dir / "t_eq_hist.png")
        plot_energy(report.energy, out_dir / "energy.png")
        write_json(resources, out_dir / "hardware.json")
        plot_hardware(resources, out_dir / "hardware.png")
        if integer:
            _record_bit_exactness(report.bit_exact, out_dir / "equivalence.json")
        write_report(report, out_dir / "snn_eval.json")
    return report


def _record_bit_exactness(proof: dict, path: Path) -> None:
    """Add the whole-set proof to the conversion's ``equivalence.json`` (if it is here)."""
    if not path.is_file():
        return
    result = read_json(path)
    result["bit_exact"] = proof["bit_exact"]
    result["bit_exact_check"] = {**proof, "inputs": "every evaluation sample"}
    write_json(result, path)


def _warnings(report: Report, max_accuracy_drop: float | None) -> list[str]:
    """What a reader of ``snn_eval.json`` must not miss."""
    warnings = []
    name, ann, qann = report.curve().name, report.ann_score, report.qann_score
    if ann is not None and max_accuracy_drop is not None and qann < ann - max_accuracy_drop:
        warnings.append(
            f"the QANN's {name} {qann:.1%} is {ann - qann:.1%} below its teacher's {ann:.1%} "
            f"(more than pet.max_accuracy_drop={max_accuracy_drop:g}): the fine-tuning may "
            "have diverged (try a lower pet.optimizer.lr) or be too short (pet.epochs)"
        )
    # A rate-coded SNN (the constant encoding) never settles: nothing to warn about.
    if report.encoding != "constant" and report.settled < report.samples:
        warnings.append(
            f"{report.samples - report.settled} of {report.samples} samples did "
            "not reach equilibrium within snn.max_timesteps; agreement is measured at the "
            "last step simulated"
        )
    return warnings


def evaluate_file(cfg) -> Report:
    """``evaluate.py``: :func:`evaluate_snn` of an ``snn.pt`` on a dataset's validation
    split; the report goes to ``out_dir`` (default: ``<snn.pt's folder>/eval_<data>``).

    Under a launcher such as ``torchrun --nproc_per_node=N``, the N processes share the
    samples out, their sums are added, and rank 0 writes the report.
    """
    cfg: EvaluateConfig = validate(cfg, EvaluateConfig)
    joined = init_from_env()
    try:
        return _evaluate_file(cfg)
    finally:
        if joined:
            torch.distributed.destroy_process_group()


def evaluation_dir(cfg) -> Path:
    """Where ``evaluate.py`` writes: ``out_dir``, or ``<snn.pt's folder>/eval_<data>``."""
    cfg: EvaluateConfig = validate(cfg, EvaluateConfig)
    return Path(cfg.out_dir or Path(cfg.snn.path).parent / f"eval_{cfg.data.name}")


def _evaluate_file(cfg: EvaluateConfig) -> Report:
    device = cfg.trainer.simulation_device()
    snn, qann, metadata = load_snn(cfg.snn.path)
    d = cfg.data
    _, val, info = build_datasets(**d.keywords(augment=False))
    shape = [info.in_channels, info.image_size, info.image_size]
    if shape != list(metadata["input_shape"]):
        raise ConfigError(
            f"{cfg.snn.path} takes inputs {metadata['input_shape']} but data={d.name} gives "
            f"{shape}: pass the dataset it was trained on"
        )
    out_dir = evaluation_dir(cfg)
    if cfg.snn.encoding not in (None, snn.encoding):  # the same QANN released another way
        method = method_of(metadata.get("method"))
        if not method.exact:
            raise ConfigError(
                f"snn.encoding={cfg.snn.encoding} applies to SpikeZIP SNNs; {cfg.snn.path} is "
                f"a {method.name} SNN, fed its input on every step"
            )
        snn = method.convert(qann, encoding=cfg.snn.encoding)
    return evaluate_snn(
        snn,
        qann,
        metadata,
        evaluation_batches(val, d.eval_batch_size, cfg.snn.eval_batches),
        out_dir,
        cfg.snn,
        dtype=cfg.snn.dtype,
        device=device,
        progress=cfg.trainer.enable_progress_bar and is_rank_zero(),
        reduce_sum=reduce_sum,
        write=is_rank_zero(),
    )
