"""The tasks a network solves, and which one a network or a report is of.

Each task (:class:`Classification`, :class:`Detection`) owns its losses, its score and its
SNN measurement and its report (``snn_eval.json``), read and written here; nothing below
this package imports it.
"""

from __future__ import annotations

from pathlib import Path

from spikezip.io import CheckpointError, read_json, write_json
from spikezip.models import task_of
from spikezip.tasks.base import Report, Task
from spikezip.tasks.classification import (
    Classification,
    ClassificationMeasurement,
    ClassificationReport,
)
from spikezip.tasks.detection import Detection, DetectionMeasurement, DetectionReport

# Each task's report by the name it writes into snn_eval.json.
REPORTS: dict[str, type[Report]] = {r.task: r for r in (ClassificationReport, DetectionReport)}

__all__ = [
    "REPORTS",
    "Classification",
    "ClassificationMeasurement",
    "ClassificationReport",
    "Detection",
    "DetectionMeasurement",
    "DetectionReport",
    "Report",
    "Task",
    "read_report",
    "report_from_json",
    "task_for",
    "write_report",
]


def task_for(arch: dict) -> Task:
    """The task of a network built from ``arch``, as its model registers it (torchvision's
    classifiers classify)."""
    if task_of(arch) == "detection":
        return Detection.of(arch)
    return Classification(arch["num_classes"])


def report_from_json(data: dict, source: str = "snn_eval.json") -> Report:
    """The typed report of an ``snn_eval.json``'s content, by the task it names.

    Raises:
        CheckpointError: a report that names no task, or is not that task's report.
    """
    task = data.get("task")
    if task is None and ("snn_accuracy" in data or "snn_map50" in data):
        # Written before reports named their task (SpikeZIP up to round 2): the one place a
        # report's keys say what it is, so that older runs still compare.
        task = "detection" if "snn_map50" in data else "classification"
    if task not in REPORTS:
        raise CheckpointError(
            f"{source} names no task ({task!r}, expected one of {list(REPORTS)}): it was "
            "written by an older SpikeZIP; rerun the run (or evaluate.py) to rewrite it"
        )
    return REPORTS[task].from_json(data, source)


def read_report(path: str | Path) -> Report:
    """The report in an ``snn_eval.json`` file (:func:`write_report`)."""
    return report_from_json(read_json(path), str(path))


def write_report(report: Report, path: str | Path) -> Path:
    """``report`` as ``snn_eval.json`` (atomically)."""
    return write_json(report.to_json(), path)
