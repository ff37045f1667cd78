"""The tasks a network solves, and which one a network or a report is of.

Each task (:class:`Classification`, :class:`Detection`) owns its losses, its score and its
SNN measurement; nothing below this package imports it.
"""

from __future__ import annotations

from spikezip.io import CheckpointError
from spikezip.models import task_of
from spikezip.snn.measure import Curve
from spikezip.tasks.base import Task
from spikezip.tasks.classification import Classification, ClassificationMeasurement
from spikezip.tasks.detection import Detection, DetectionMeasurement

TASKS: dict[str, type] = {"classification": Classification, "detection": Detection}

__all__ = [
    "TASKS",
    "Classification",
    "ClassificationMeasurement",
    "Detection",
    "DetectionMeasurement",
    "Task",
    "curve_of",
    "task_for",
]


def task_for(arch: dict) -> Task:
    """The task of a network built from ``arch``, as its model registers it (torchvision's
    classifiers classify)."""
    if task_of(arch) == "detection":
        return Detection.of(arch)
    return Classification(arch["num_classes"])


def curve_of(report: dict) -> Curve:
    """The per-T curve of an ``snn_eval.json``, read by the task that the report names.

    Raises:
        CheckpointError: a report that names no task it was written for.
    """
    task = report.get("task")
    if task not in TASKS:
        raise CheckpointError(
            f"this snn_eval.json names no task ({task!r}, expected one of {list(TASKS)}): it "
            "was written by an older SpikeZIP; rerun the run (or evaluate.py) to rewrite it"
        )
    return TASKS[task].curve_of(report)
