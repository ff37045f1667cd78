"""``evaluate.py`` with a probe, for tests/test_distributed.py: run under ``torchrun`` in
place of ``evaluate.py`` (same arguments), it records what *this* process measured in
``$SPIKEZIP_PROBE_DIR/rank<RANK>.json``: the indices of the validation samples it read,
the number of samples its own measurement counted (before the sums over processes), and
the process group it was in. Two processes that never joined one group would each
measure everything, and rank 0 would still write the same report; the probe shows it.

Not a test module (pytest collects ``test_*.py`` only); nothing of SpikeZIP changes.
"""

import json
import os
import runpy
import sys
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import spikezip.evaluation as evaluation  # noqa: E402

PROBE = {"read": [], "measured": [], "groups": []}


class Recorded(Dataset):
    """A dataset that notes every index read from it."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        PROBE["read"].append(int(index))
        return self.dataset[index]

    def __getattr__(self, name):  # anything else is the dataset's own
        return getattr(self.__dict__["dataset"], name)


def build_datasets(*args, **kwargs):
    train, val, info = original_build(*args, **kwargs)
    return train, Recorded(val), info


def measure_snn(*args, **kwargs):
    totals = original_measure(*args, **kwargs)  # this process's sums, not yet reduced
    joined = dist.is_available() and dist.is_initialized()
    PROBE["measured"].append(int(totals.count))
    PROBE["groups"].append(
        {"world_size": dist.get_world_size(), "rank": dist.get_rank()} if joined else None
    )
    return totals


original_build, original_measure = evaluation.build_datasets, evaluation.measure_snn
evaluation.build_datasets, evaluation.measure_snn = build_datasets, measure_snn
try:
    runpy.run_path(str(ROOT / "evaluate.py"), run_name="__main__")
finally:
    out = Path(os.environ["SPIKEZIP_PROBE_DIR"]) / f"rank{os.environ.get('RANK', '0')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(PROBE))
