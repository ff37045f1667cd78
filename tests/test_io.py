"""Interrupted saves: a write that fails halfway, a process killed while writing, and a
Lightning checkpoint interrupted while saving all keep the previous file, byte for byte
(README: "a kill while saving keeps the previous one")."""

import contextlib
import io
import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from spikezip.io import atomic_write, load_checkpoint


def _previous(path):
    """A real checkpoint at ``path``, and its bytes."""
    torch.save({"epoch": torch.tensor(1), "weight": torch.arange(4.0)}, path)
    return path.read_bytes()


class Interrupted(Exception):
    """A writer's failure that is nothing but itself (not a full disk, not an OSError)."""


@pytest.mark.parametrize("error", [Interrupted("halfway"), KeyboardInterrupt()])
def test_a_write_that_fails_halfway_keeps_the_previous_file(tmp_path, error):
    path = tmp_path / "last.ckpt"
    before = _previous(path)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of a new checkpoint")
            f.flush()
            raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind
    assert load_checkpoint(path)["epoch"] == 1


def test_a_write_that_fails_leaves_no_file_where_there_was_none(tmp_path):
    def write(tmp):
        tmp.write_bytes(b"half")
        raise Interrupted("halfway")

    with pytest.raises(Interrupted):
        atomic_write(tmp_path / "snn.pt", write)
    assert os.listdir(tmp_path) == []


def test_a_process_killed_while_writing_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    before = _previous(path)
    ready_r, ready_w = os.pipe()
    # A forked process (a fresh interpreter would spend seconds importing torch) that
    # writes half a file through atomic_write, says so on the pipe, then waits to be
    # killed; it never returns into pytest, whatever happens.
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)

            def write(tmp):
                with open(tmp, "wb") as f:
                    f.write(b"half of a new checkpoint")
                    f.flush()
                os.write(ready_w, f"{tmp}\n".encode())
                time.sleep(60)

            atomic_write(path, write)
        finally:
            os._exit(1)
    os.close(ready_w)
    try:
        ready, _, _ = select.select([ready_r], [], [], 30)  # the half is on disk
        written = os.read(ready_r, 4096).decode().strip() if ready else ""
        assert written, "the writer did not get to write"
        os.kill(pid, signal.SIGKILL)  # kill -9: no handler, no finally runs
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        os.close(ready_r)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    # What the killed process wrote is in a hidden temporary file beside it, never in
    # the checkpoint a reader (or a resumed run) opens.
    assert os.path.dirname(written) == str(tmp_path) and written != str(path)
    assert Path(written).read_bytes() == b"half of a new checkpoint"


def test_an_interrupted_lightning_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from spikezip.lit.guards import AtomicCheckpointIO

    checkpoints = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoints.save_checkpoint({"epoch": 1, "weight": torch.arange(4.0)}, path)
    before = path.read_bytes()
    calls = []

    # TorchCheckpointIO's own save (torch.save into memory, then one write to the path
    # it is given), interrupted after writing half of the new checkpoint there. Patching
    # torch.save itself would fail before Lightning opens any file, so an AtomicCheckpointIO
    # that wrote in place would pass too.
    def interrupted(checkpoint, filepath):
        calls.append(filepath)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with open(filepath, "wb") as f:
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise KeyboardInterrupt  # the run stopped while saving

    # wherever this Lightning defines TorchCheckpointIO.save_checkpoint
    lightning_io = sys.modules[TorchCheckpointIO.save_checkpoint.__module__]
    monkeypatch.setattr(lightning_io, "_atomic_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_checkpoint({"epoch": 2, "weight": torch.zeros(4)}, path)
    assert len(calls) == 1  # the save that was interrupted is the one Lightning makes
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(path.parent) == ["last.ckpt"]
