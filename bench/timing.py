"""What the benchmark scripts share: wall-clock timing and writing their results."""

from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def wall(fn) -> float:
    """Seconds one call of ``fn()`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_results(data: dict, path: Path) -> None:
    """``data`` as JSON at ``path`` (under ``bench/results/`` by default), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")
