"""File helpers every other module writes and reads through, knowing nothing of SpikeZIP.

Writes are atomic (an interrupted write leaves no file) and respect the user's umask; a
file that is missing, truncated or not what was expected raises :class:`CheckpointError`
naming it. This module imports nothing of SpikeZIP but the base of its errors.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import gzip
import json
import os
import shutil
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from spikezip.errors import SpikeZIPError


class CheckpointError(SpikeZIPError, ValueError):
    """A file that is missing, unreadable or not the SpikeZIP file that was expected."""


class DiskFullError(SpikeZIPError, OSError):
    """A file that could not be written for lack of space; nothing of it was left."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]"
        return str(self.strerror)


# What a full disk's error tells the user to do (here and for writes outside this module).
FREE_SPACE = (
    "free some space (or move the run directory to a larger disk) and run the same command again"
)
# Below this much free space a failed write is taken for a full disk: torch.save reports
# one as a RuntimeError of its zip writer, without errno ENOSPC.
_FULL = 1 << 20


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _disk_full(path: Path, tmp: str, err: BaseException) -> DiskFullError | None:
    """The error to raise for a write of ``path`` (through ``tmp``) that failed with
    ``err``, if the file system is full; None for any other failure."""
    try:
        free = shutil.disk_usage(path.parent).free
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
    except OSError:
        return None
    if getattr(err, "errno", None) != errno.ENOSPC and free >= _FULL:
        return None
    needs = f"it needs more than {_megabytes(written)} and " if written else ""
    return DiskFullError(
        errno.ENOSPC,
        f"no space left to write {path}: {needs}{path.parent} has {_megabytes(free)} "
        f"free; nothing of it was kept. {FREE_SPACE[0].upper()}{FREE_SPACE[1:]}",
    )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write a file through ``write(tmp_path)``, then rename it to ``path``: a reader never
    sees half a file, and an interrupted write leaves none. The file gets the mode a plain
    ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s private 0600.

    Raises:
        DiskFullError: the file system filled up; its message names the file, the space
            the write had used and the directory's free space.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        full = _disk_full(path, tmp, err)
        if full is None:
            raise
        raise full from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def decompress(archive: str | Path, path: str | Path) -> Path:
    """``archive`` (a ``.gz`` file) decompressed into ``path``, atomically."""

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


class BusyError(SpikeZIPError, RuntimeError):
    """A file another living process holds exclusively (:func:`held_lock`)."""


@contextlib.contextmanager
def held_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` inside the block, or refuse at once if another
    process holds it. The lock file says who holds it (host, pid, since when) and is
    removed at the end of the block; the kernel releases the lock when its process dies
    however it dies (``kill -9`` too), so a killed holder never blocks the next one (its
    file stays, and is taken over). ``what`` names the locked thing in the error.

    Raises:
        BusyError: another process holds the lock; the message names it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise BusyError(
                f"{what} is in use by {holder}: wait for it to end, or stop it first (a "
                f"process that was killed holds nothing; the lock is {path})"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()  # locked a file its holder had just removed: lock the new one
    try:
        handle.seek(0)
        handle.truncate()
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()} (since {since})\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: no one locks a file on its way out
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


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
