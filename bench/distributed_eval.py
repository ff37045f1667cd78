"""Wall time of evaluating one SNN with 1 and with 2 processes (``torchrun``), same report.

Evaluates an ``snn.pt`` (default: the newest ``outputs/*/*/snn.pt``, e.g. ``make demo``'s)
on its dataset's validation split with ``python -m torch.distributed.run
--nproc_per_node=N evaluate.py``, for N = 1 and 2, and checks that both write the same
``snn_eval.json`` counts (the real-valued output error agrees up to float32 rounding).
Times include starting the processes and loading the data.
Run: ``.venv/bin/python bench/distributed_eval.py``; writes
``bench/results/distributed_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from timing import RESULTS, wall, write_results

ROOT = Path(__file__).resolve().parents[1]


def newest_snn() -> Path:
    found = sorted(ROOT.glob("outputs/*/*/snn.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit("no outputs/*/*/snn.pt: run `make demo` first, or pass --snn PATH")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snn", type=Path, default=None)
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "distributed_eval.json")
    args = parser.parse_args()
    snn = args.snn or newest_snn()
    env = {**os.environ, "WANDB_MODE": "disabled"}
    rows, reports = [], {}
    for procs in args.processes:
        out = RESULTS / f"distributed_eval_{procs}p"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={procs}", str(ROOT / "evaluate.py"), f"snn.path={snn}",
            f"data={args.data}", f"out_dir={out}", "trainer.enable_progress_bar=false",
        ]  # fmt: skip

        def run(command=command) -> None:
            subprocess.run(command, check=True, env=env, capture_output=True, cwd=ROOT)

        seconds = wall(run)
        reports[procs] = json.loads((out / "snn_eval.json").read_text())
        rows.append({"processes": procs, "seconds": seconds})
        print(f"{procs} process(es): {seconds:.1f} s, {reports[procs]['samples']} samples")
    # Counts must agree exactly; the real-valued output error up to float32 rounding.
    errors = {n: r.pop("output_error_per_t") for n, r in reports.items()}
    first = args.processes[0]
    same = all(r == reports[first] for r in reports.values())
    spread = max(
        abs(a - b) / max(abs(b), 1e-30)
        for e in errors.values()
        for a, b in zip(e, errors[first], strict=True)
    )
    print(f"the same counts in snn_eval.json from every process count: {same}; output error "
          f"differs by at most {spread:.1e} (relative)")  # fmt: skip
    write_results(
        {"snn": str(snn), "results": rows, "same_counts": same, "output_error_spread": spread},
        args.out,
    )


if __name__ == "__main__":
    main()
