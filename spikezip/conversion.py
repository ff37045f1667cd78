"""Convert a QANN and prove its SNN equivalent: what ``convert.py`` (and ``train.py``) do.

``equivalence.json`` is written always; ``snn.pt`` only for an SNN proven equivalent.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from spikezip.artifacts import load_qann, save_snn, write_json
from spikezip.config import ConvertConfig, validate
from spikezip.errors import SpikeZIPError
from spikezip.snn import MAX_TIMESTEPS, Encoding, check_equivalence, to_snn


class NotEquivalentError(SpikeZIPError, RuntimeError):
    """The converted SNN does not reproduce its QANN; no SNN file was written."""


def sample_inputs(metadata: dict, count: int = 16) -> tuple[Tensor, str]:
    """Validation images of the QANN's dataset if they can be loaded, else seeded random
    inputs; and which of the two it is."""
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


def convert_and_prove(
    qann: nn.Module,
    metadata: dict,
    out_dir: str | Path,
    *,
    encoding: Encoding | str = Encoding.even,
    max_timesteps: int = MAX_TIMESTEPS,
    sample: Tensor | None = None,
) -> dict:
    """Convert ``qann`` and prove it on ``sample`` in float64 (default:
    :func:`sample_inputs`). Writes ``equivalence.json`` always and ``snn.pt`` only if
    equivalent; returns the report.

    Raises:
        NotEquivalentError: the report says the SNN differs; the message says where.
    """
    out_dir = Path(out_dir)
    inputs = "given"
    if sample is None:
        sample, inputs = sample_inputs(metadata)
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
        "encoding": snn.encoding.value,
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


def convert_file(cfg) -> dict:
    """``convert.py``: :func:`convert_and_prove` for the ``qann.ckpt`` of a config
    (output next to it unless ``out_dir`` is given)."""
    cfg: ConvertConfig = validate(cfg, ConvertConfig)
    qann, metadata = load_qann(cfg.qann)
    out_dir = cfg.out_dir or Path(cfg.qann).parent
    return convert_and_prove(
        qann, metadata, out_dir, encoding=cfg.encoding, max_timesteps=cfg.max_timesteps
    )
