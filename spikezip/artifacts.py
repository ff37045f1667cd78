"""Every run file SpikeZIP reads or writes: checkpoints, ``qann.ckpt``, ``snn.pt``, JSON, CSV.

A network is stored as what rebuilds it (the ``arch`` of
:func:`spikezip.models.build_model`, the levels, the conversion settings) plus its
tensors, never as pickled code, so every file loads with ``weights_only=True``. Writes are
atomic (an interrupted save leaves no file) and respect the user's umask. A file that is
missing, truncated or not what was expected raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from spikezip.errors import SpikeZIPError
from spikezip.methods import MethodConfig, MethodName, method_of, settings_of
from spikezip.models import build_model
from spikezip.snn import SpikingNetwork, to_snn

QANN_FORMAT = "spikezip-qann/1"
SNN_FORMAT = "spikezip-snn/1"


class CheckpointError(SpikeZIPError, ValueError):
    """A file that is missing, unreadable or not the SpikeZIP file that was expected."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write a file through ``write(tmp_path)``, then rename it to ``path``: a reader never
    sees half a file, and an interrupted write leaves none. The file gets the mode a plain
    ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def decompress(archive: str | Path, path: str | Path) -> Path:
    """``archive`` (a ``.gz`` file) decompressed into ``path``, atomically."""
    import gzip

    def write(tmp: Path) -> None:
        with gzip.open(archive, "rb") as source, open(tmp, "wb") as out:
            shutil.copyfileobj(source, out)

    return atomic_write(path, write)


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) inside the block: processes
    that share a file (the jobs of a sweep on one machine or one POSIX file system) take
    turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def copy_file(source: str | Path, destination: str | Path) -> Path:
    """``source`` copied to ``destination``, atomically."""
    return atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))


def write_json(data: dict, path: str | Path) -> Path:
    """``data`` as indented JSON (no NaN: JSON has none, so callers pass None)."""
    text = json.dumps(data, indent=2, allow_nan=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | Path) -> dict:
    """A JSON file written by :func:`write_json`; a broken one is named, not a traceback."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable JSON file: {err}") from err


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """A CSV file with ``header`` and ``rows``."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    return atomic_write(path, write)


def _kind_of(path: Path) -> str:
    """What a file that torch cannot read looks like, for the error message."""
    head = path.open("rb").read(512)
    if not head:
        return "an empty file"
    if zipfile.is_zipfile(path):
        return "a zip archive that torch cannot read (truncated, or not written by torch.save)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file that is not a PyTorch checkpoint (corrupt or truncated?)"
    return "a JSON text file" if text.lstrip()[:1] in "{[" else "a text file"


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load`` of a checkpoint (weights only, on the CPU) with errors that name the
    file and what it holds instead.

    Raises:
        CheckpointError: missing, truncated, a text file, or not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's unpickler fails on foreign bytes with any exception type
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a PyTorch file: it is {_kind_of(path)}; "
            "expected a file written by torch.save (teacher.ckpt, qann.ckpt, snn.pt, ...)"
        ) from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a dict")
    return payload


def _save(payload: dict, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def save_ann(model: nn.Module, path: str | Path) -> Path:
    """An ANN's weights in the layout of a teacher checkpoint (``state_dict``, ``model.*``)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    return _save({"state_dict": state}, path)


def load_ann(path: str | Path, arch: dict) -> nn.Module:
    """The ANN ``build_model(**arch)`` with the weights of a ``teacher.ckpt`` (Lightning,
    ``model.*`` keys) or of a plain ``state_dict`` file."""
    payload = load_checkpoint(path)
    state = dict(payload.get("state_dict", payload))
    if any(k.startswith("model.") for k in state):
        state = {k: v for k, v in state.items() if k.startswith("model.")}
        consume_prefix_in_state_dict_if_present(state, "model.")
    model = build_model(**arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit model {arch['name']}: {err}") from err
    return model


def save_qann(
    qann: nn.Module,
    path: str | Path,
    *,
    arch: dict,
    levels: int,
    input_shape: Sequence[int],
    data: dict | None = None,
    method: MethodConfig | str = MethodName.spikezip,
) -> Path:
    """Store the ANN a method's SNN comes from (for SpikeZIP a QANN built as
    ``to_qann(build_model(**arch), levels)``); ``data`` (``build_datasets`` keywords: name,
    root, seed, subset sizes) says what it was trained on, so ``convert.py`` can check it on
    real images (and calibrate a rate SNN)."""
    return _save(
        {
            "format": QANN_FORMAT,
            "method": settings_of(method).as_dict(),
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
    found = payload.get("format")
    if found != expected:
        kind = expected.split("/")[0].split("-")[1].upper()
        raise CheckpointError(
            f"{path} is not a SpikeZIP {kind} file (format {found!r}, expected {expected!r})"
        )
    return payload


def _rebuild_qann(payload: dict, path, state_key: str) -> nn.Module:
    qann = method_of(payload.get("method")).rebuild(payload["arch"], payload["levels"])
    try:
        qann.load_state_dict(payload[state_key])
    except (RuntimeError, TypeError, KeyError) as err:
        raise CheckpointError(
            f"{path}: the weights do not fit the stored architecture: {err}"
        ) from err
    return qann.eval()


def load_qann(path: str | Path) -> tuple[nn.Module, dict]:
    """``(qann, metadata)`` from a ``qann.ckpt``; metadata has ``method``, ``arch``,
    ``levels``, ``input_shape``, ``data``."""
    payload = _read(path, QANN_FORMAT)
    qann = _rebuild_qann(payload, path, "state_dict")
    return qann, {k: v for k, v in payload.items() if k != "state_dict"}


def save_snn(snn: SpikingNetwork, qann: nn.Module, path: str | Path, metadata: dict) -> Path:
    """Store an SNN (its own fused tensors) with the QANN it came from and how to rebuild
    its graph; ``metadata`` is the QANN's (``arch``, ``levels``, ``input_shape``)."""
    return _save(
        {
            "format": SNN_FORMAT,
            "method": settings_of(metadata.get("method")).as_dict(),
            "arch": metadata["arch"],
            "levels": metadata["levels"],
            "input_shape": list(metadata["input_shape"]),
            "encoding": snn.encoding.value,
            "release_steps": snn.release_steps,
            "neurons": _neuron_kinds(snn),
            "qann_state": qann.state_dict(),
            "snn_state": snn.state_dict(),
        },
        path,
    )


def _neuron_kinds(snn: SpikingNetwork) -> list[str]:
    return sorted({type(n).__name__ for n in snn.neurons.values()})


def load_snn(path: str | Path) -> tuple[SpikingNetwork, nn.Module, dict]:
    """``(snn, qann, metadata)`` from an ``snn.pt``."""
    payload = _read(path, SNN_FORMAT)
    settings = settings_of(payload.get("method"))
    method = method_of(settings)
    qann = _rebuild_qann(payload, path, "qann_state")
    if method.exact:
        release = payload["release_steps"] if payload["encoding"] == "even" else None
        snn = to_snn(qann, payload["encoding"], release)
    else:  # the rate method's thresholds come with the SNN's tensors below
        snn = method.convert(qann, settings=settings)
    if payload.get("neurons", _neuron_kinds(snn)) != _neuron_kinds(snn):
        raise CheckpointError(
            f"{path} holds an SNN of {payload['neurons']} neurons, but its method "
            f"{method.name} builds {_neuron_kinds(snn)}: it was saved with the wrong method"
        )
    try:
        snn.load_state_dict(payload["snn_state"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the SNN tensors do not fit its graph: {err}") from err
    meta = {k: v for k, v in payload.items() if k not in ("qann_state", "snn_state")}
    return snn, qann, meta
