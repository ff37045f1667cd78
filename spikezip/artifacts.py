"""The run files that rebuild networks: ``teacher.ckpt``, ``qann.ckpt``, ``snn.pt``.

A network is stored as what rebuilds it (the ``arch`` of
:func:`spikezip.models.build_model`, the levels, the conversion settings) plus its
tensors, never as pickled code, so every file loads with ``weights_only=True``. Files are
written and read through :mod:`spikezip.io` (atomic writes; a file that is missing,
truncated or not what was expected raises :class:`CheckpointError` naming it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from spikezip.errors import few
from spikezip.io import CheckpointError, atomic_write, load_checkpoint
from spikezip.methods import MethodConfig, method_of, settings_of
from spikezip.models import build_model
from spikezip.quant.integer import integerize
from spikezip.snn import SpikingNetwork
from spikezip.tracing import UnsupportedLayerError

QANN_FORMAT = "spikezip-qann/1"
SNN_FORMAT = "spikezip-snn/1"


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
    broken = [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()
    ]
    if broken:  # e.g. a diverged teacher saved by an older version, or by another tool
        raise CheckpointError(
            f"{path} holds non-finite weights ({few(broken)}): it comes from a "
            "training that diverged; train the teacher again (move the file aside)"
        )
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
    method: MethodConfig | str | None = None,
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
            # An integer QANN is stored as the float QANN it was made from and its plan.
            "integer": getattr(qann, "plan", None),
            "state_dict": getattr(qann, "source", qann).state_dict(),
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
    plan = payload.get("integer")
    if plan:
        try:
            return integerize(qann.eval(), plan, plan["input_shape"])
        except (UnsupportedLayerError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: its integer plan does not fit its QANN: {err}") from err
    return qann.eval()


def load_qann(path: str | Path) -> tuple[nn.Module, dict]:
    """``(qann, metadata)`` from a ``qann.ckpt``; metadata has ``method``, ``arch``,
    ``levels``, ``input_shape``, ``data`` and ``integer`` (the plan of an integer QANN,
    which is then what is returned; else None)."""
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
            "integer": getattr(qann, "plan", None),
            "qann_state": getattr(qann, "source", qann).state_dict(),
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
    snn = method.from_file(qann, payload, settings)  # its tensors are loaded below
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
