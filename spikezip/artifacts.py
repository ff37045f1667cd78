"""Run artifacts on disk: ``qann.ckpt`` and ``snn.pt``, loadable with ``weights_only=True``.

A network is stored as what rebuilds it (the ``arch`` of
:func:`spikezip.models.build_model`, the levels, the conversion settings) plus its
tensors, never as pickled code. Writes are atomic: an interrupted save leaves no file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from spikezip.models import build_model
from spikezip.pet.checkpoint import CheckpointError, load_checkpoint
from spikezip.plots import atomic_write
from spikezip.quant import to_qann
from spikezip.snn import SpikingNetwork, to_snn

QANN_FORMAT = "spikezip-qann/1"
SNN_FORMAT = "spikezip-snn/1"


def _save(payload: dict, path: str | Path) -> Path:
    return atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def save_qann(
    qann: nn.Module,
    path: str | Path,
    arch: dict,
    levels: int,
    input_shape,
    data: dict | None = None,
) -> Path:
    """Store a QANN built as ``to_qann(build_model(**arch), levels)``; ``data`` (name,
    root, seed) says what it was trained on, so ``convert.py`` can check it on real images."""
    return _save(
        {
            "format": QANN_FORMAT,
            "arch": arch,
            "levels": int(levels),
            "input_shape": list(input_shape),
            "data": data,
            "state_dict": qann.state_dict(),
        },
        path,
    )


def _read(path: str | Path, expected: str) -> dict:
    payload = load_checkpoint(path)
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != expected:
        raise CheckpointError(
            f"{path} is not a SpikeZIP {expected.split('/')[0].split('-')[1].upper()} file "
            f"(format {found!r}, expected {expected!r})"
        )
    return payload


def _rebuild_qann(payload: dict, path) -> nn.Module:
    qann = to_qann(build_model(**payload["arch"]), payload["levels"])
    try:
        qann.load_state_dict(payload.get("qann_state", payload.get("state_dict")))
    except (RuntimeError, TypeError) as err:
        raise CheckpointError(
            f"{path}: the weights do not fit the stored architecture: {err}"
        ) from err
    return qann.eval()


def load_qann(path: str | Path) -> tuple[nn.Module, dict]:
    """``(qann, metadata)`` from a ``qann.ckpt``; metadata has ``arch``, ``levels``,
    ``input_shape``."""
    payload = _read(path, QANN_FORMAT)
    return _rebuild_qann(payload, path), {k: v for k, v in payload.items() if k != "state_dict"}


def save_snn(snn: SpikingNetwork, qann: nn.Module, path: str | Path, metadata: dict) -> Path:
    """Store an SNN (its own fused tensors) with the QANN it came from and how to rebuild
    its graph; ``metadata`` is the QANN's (``arch``, ``levels``, ``input_shape``)."""
    return _save(
        {
            "format": SNN_FORMAT,
            "arch": metadata["arch"],
            "levels": metadata["levels"],
            "input_shape": list(metadata["input_shape"]),
            "encoding": snn.encoding,
            "release_steps": snn.release_steps,
            "qann_state": qann.state_dict(),
            "snn_state": snn.state_dict(),
        },
        path,
    )


def load_snn(path: str | Path) -> tuple[SpikingNetwork, nn.Module, dict]:
    """``(snn, qann, metadata)`` from an ``snn.pt``."""
    payload = _read(path, SNN_FORMAT)
    qann = _rebuild_qann(payload, path)
    release = payload["release_steps"] if payload["encoding"] == "even" else None
    snn = to_snn(qann, payload["encoding"], release)
    try:
        snn.load_state_dict(payload["snn_state"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the SNN tensors do not fit its graph: {err}") from err
    meta = {k: v for k, v in payload.items() if k not in ("qann_state", "snn_state")}
    return snn, qann, meta
