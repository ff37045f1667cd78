"""Convert a QANN and prove its SNN equivalent: what ``convert.py`` (and ``train.py``) do.

``equivalence.json`` is written always; ``snn.pt`` and ``hardware.json`` (the SNN's
resources, measured on the proof's samples) only for an SNN proven equivalent.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from spikezip.artifacts import load_qann, load_snn, save_snn
from spikezip.config import ConfigError, ConvertConfig, validate
from spikezip.data import DatasetNotFoundError, build_datasets
from spikezip.export.integer import export_integer
from spikezip.export.nir import write_nir
from spikezip.io import write_json
from spikezip.methods import MethodConfig, calibration_data, method_of, settings_of
from spikezip.plots import plot_hardware
from spikezip.snn import MAX_TIMESTEPS, Encoding, check_equivalence
from spikezip.snn.equivalence import NotEquivalentError
from spikezip.snn.hardware import format_hardware, measure_hardware

log = logging.getLogger(__name__)


def sample_inputs(metadata: dict, count: int = 16) -> tuple[Tensor, str]:
    """Validation images of the QANN's dataset if they can be loaded, else seeded random
    inputs; and which of the two it is."""
    data = metadata.get("data")
    if data:
        try:
            _, val, _ = build_datasets(**data, augment=False)
            images = [val[i][0] for i in range(min(count, len(val)))]
            return torch.stack(images), f"{data['name']} validation images"
        except DatasetNotFoundError:
            pass  # e.g. converting on a machine without the dataset: random inputs below
    gen = torch.Generator().manual_seed(0)
    pixels = (metadata.get("integer") or {}).get("pixels")
    if pixels:  # an integer network takes images made of integer pixels
        shape = (count, *metadata["input_shape"])
        p = torch.randint(0, pixels["max"] + 1, shape, generator=gen).double() / pixels["max"]
        view = (1, -1) + (1,) * (len(shape) - 2)
        mean, std = (
            torch.tensor(pixels[k], dtype=torch.float64).view(view) for k in ("mean", "std")
        )
        return ((p - mean) / std).float(), "random pixel"
    return torch.randn(count, *metadata["input_shape"], generator=gen), "random normal"


def convert_and_prove(
    qann: nn.Module,
    metadata: dict,
    out_dir: str | Path,
    *,
    encoding: Encoding | str = Encoding.even,
    max_timesteps: int = MAX_TIMESTEPS,
    sample: Tensor | None = None,
    method: MethodConfig | None = None,
    calibration: Iterable | None = None,
    progress: bool = False,
) -> dict:
    """Convert ``qann`` as its method does and check it on ``sample`` in float64
    (default: :func:`sample_inputs`): an exact method's conversion of the float64 QANN is
    proven, and ``snn.pt`` holds that SNN in the QANN's dtype. Writes ``equivalence.json``
    always, and ``snn.pt`` with ``hardware.json`` (its resources on the same samples) for
    an exact method only if the SNN is proven equivalent; a baseline's report says how far
    its SNN is from its ANN after ``max_timesteps`` steps, and its files are written.
    ``calibration``: training batches (the rate method's thresholds).

    Raises:
        NotEquivalentError: an exact method's SNN differs; the message says where.
    """
    out_dir = Path(out_dir)
    inputs = "given"
    if sample is None:
        sample, inputs = sample_inputs(metadata)
    method = method or settings_of(metadata.get("method"))
    conversion = method_of(method.name)
    snn = conversion.convert(qann, encoding=encoding, calibration=calibration, settings=method)
    qann64 = copy.deepcopy(qann).double().eval()
    if conversion.exact:
        # The proof is of the conversion itself, done in float64; the saved SNN is that
        # SNN rounded once to the QANN's dtype (to_snn folds batch-norm in float64 either
        # way). Upcasting the float32 SNN instead would compare the QANN with a network
        # whose weights were rounded, and a neuron ~1e-7 from a level boundary would differ.
        proven = conversion.convert(qann64, encoding=encoding, settings=method)
    else:  # a baseline: its SNN as saved (its thresholds come from float32 calibration)
        proven = copy.deepcopy(snn).double()
    report = check_equivalence(qann64, proven, sample.double(), max_timesteps, progress=progress)
    result = {
        "method": method.name.value,
        "exact": conversion.exact,
        "equivalent": report.equivalent,
        "encoding": snn.encoding.value,
        "inputs": inputs,
        **report.to_dict(),
    }
    write_json(result, out_dir / "equivalence.json")
    if conversion.exact and not report.equivalent:
        raise NotEquivalentError(
            f"the SNN is not equivalent to the QANN, snn.pt not written:\n{report}\n"
            f"(full report in {out_dir / 'equivalence.json'})"
        )
    shape = tuple(metadata["input_shape"])
    described = f"{len(sample)} {_inputs(inputs)}"
    resources = measure_hardware(proven, sample.double(), shape, max_timesteps, described)
    write_json(resources, out_dir / "hardware.json")
    plot_hardware(resources, out_dir / "hardware.png")
    log.info("hardware resources (hardware.json):\n%s", format_hardware(resources))
    save_snn(snn, qann, out_dir / "snn.pt", metadata)
    return result


def _inputs(kind: str) -> str:
    """``"mnist5k validation images"``, ``"random normal inputs"``: what was checked."""
    return kind if kind.endswith("images") else f"{kind} inputs"


def conversion_summary(result: dict, out_dir: str | Path) -> str:
    """What :func:`convert_and_prove` found (``result``: its ``equivalence.json``), for a
    terminal: the verdict, the largest differences, T_eq, and the files written."""
    out_dir = Path(out_dir)
    t_eq = [t for t in result["t_eq"] if t >= 0]
    mismatched = sum(layer["mismatches"] for layer in result["layers"])
    checked = (
        f"on {len(result['t_eq'])} {_inputs(result['inputs'])} in {result['dtype']}, "
        f"{result['encoding']} encoding"
    )
    if result["exact"]:
        verdict = "equivalent to its QANN" if result["equivalent"] else "NOT equivalent"
        lines = [f"{result['method']} SNN {verdict} ({checked}):"]
        lines.append(
            f"  neuron levels   {mismatched} differ, over {len(result['layers'])} neuron layers"
        )
        if result.get("bit_exact") is not None:
            lines.append(
                f"  bit-exact       {result['bit_exact']}: {result['levels_compared']} integer "
                f"levels and {result['outputs_compared']} outputs compared, "
                f"{result['outputs_differing']} outputs differ"
            )
    else:
        lines = [f"{result['method']} SNN, approximate by design ({checked}):"]
    lines += [
        f"  output          max |SNN - QANN| {result['output_max_abs_diff']:.3g} (relative "
        f"{result['output_rel_diff']:.3g}); argmax agreement {result['agreement']:.1%}",
        f"  T_eq            {len(t_eq)}/{len(result['t_eq'])} settled, max {max(t_eq, default=-1)}",
        f"  report          {out_dir / 'equivalence.json'}",
    ]
    if (out_dir / "snn.pt").exists():
        lines.append(f"  SNN             {out_dir / 'snn.pt'} (evaluate.py snn.path=...)")
        lines.append(f"  resources       {out_dir / 'hardware.json'} (registers, synapses, memory)")
    if result.get("export"):
        lines.append(f"  export          {result['export']}")
    return "\n".join(lines)


def output_dir(cfg) -> Path:
    """Where ``convert.py`` writes: ``out_dir``, or the folder of the ``qann.ckpt``."""
    cfg: ConvertConfig = validate(cfg, ConvertConfig)
    return Path(cfg.out_dir) if cfg.out_dir else Path(cfg.qann).parent


def convert_file(cfg) -> dict:
    """``convert.py``: :func:`convert_and_prove` for the ``qann.ckpt`` of a config
    (output next to it unless ``out_dir`` is given). A rate-coded baseline calibrates its
    thresholds on the training split of the dataset the network was trained on."""
    cfg: ConvertConfig = validate(cfg, ConvertConfig)
    qann, metadata = load_qann(cfg.qann)
    method = settings_of(metadata.get("method"))
    _check_export(cfg.export, metadata, method)
    calibration = _training_batches(metadata) if method_of(method).calibrates else None
    out_dir = output_dir(cfg)
    result = convert_and_prove(
        qann,
        metadata,
        out_dir,
        encoding=cfg.encoding,
        max_timesteps=cfg.max_timesteps,
        method=method,
        calibration=calibration,
        progress=True,
    )
    if cfg.export is not None:
        snn, _, saved = load_snn(out_dir / "snn.pt")
        shape = tuple(saved["input_shape"])
        if cfg.export == "integer":  # test vectors: the proof's first 8 inputs
            sample, _ = sample_inputs(metadata, 8)
            result["export"] = str(export_integer(snn, out_dir / "integer", sample, shape))
        else:
            result["export"] = str(write_nir(snn, out_dir / "snn.nir", shape))
    return result


def _check_export(export, metadata: dict, method) -> None:
    """Refuse, before any work, an export the network cannot have."""
    if export == "integer" and not metadata.get("integer"):
        raise ConfigError(
            "export=integer needs an integer QANN: train it with pet.weight_bits=8 (or 4, ...)"
        )
    if export == "nir" and method_of(method).name not in ("rate", "qcfs"):
        raise ConfigError(
            f"export=nir takes the IF networks of method=rate or qcfs; this is a "
            f"{method_of(method).name} network, whose neurons NIR cannot express "
            "(signed spikes, a bounded tracer); use export=integer for an integer SpikeZIP SNN"
        )


def _training_batches(metadata: dict) -> DataLoader:
    data = metadata.get("data") or {}
    if not data:
        raise ConfigError(
            "a rate-coded network calibrates its thresholds on its training data, and this "
            "qann.ckpt does not say which dataset that was"
        )
    train, _, _ = build_datasets(**data, augment=False)
    return calibration_data(train)
