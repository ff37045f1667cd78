"""What the benchmark scripts share: wall-clock timing, peak memory and writing results."""

from __future__ import annotations

import ctypes
import json
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
_MMAP_THRESHOLD = -3  # glibc's mallopt(M_MMAP_THRESHOLD, ...)


def wall(fn) -> float:
    """Seconds one call of ``fn()`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_results(data: dict, path: Path) -> None:
    """``data`` as JSON at ``path`` (under ``bench/results/`` by default), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def return_freed_memory() -> None:
    """Make glibc give every freed block over 64 KiB back to the system at once (its
    default threshold grows after large frees and then keeps them) and hand back what it
    holds free now, so that the resident set follows what torch holds. For memory
    measurements only: fresh pages cost page faults, so timings are taken without it."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_MMAP_THRESHOLD, 64 * 1024)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the CPU figures are upper bounds then
        pass


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_bytes(fn, device: str = "cpu") -> int:
    """The most memory ``fn()`` holds at once beyond what was held before: on a GPU from
    torch's allocator, on the CPU the peak resident set (Linux's high-water mark, reset
    first through ``/proc/self/clear_refs``) minus the resident set before."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    return_freed_memory()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    fn()
    return _status("VmHWM") - before
