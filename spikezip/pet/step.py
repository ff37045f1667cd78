"""The forward and backward of one PET batch, one path at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from spikezip.pet.loss import EnsembleLoss
from spikezip.pet.paths import PETModel


@dataclass
class PathsResult:
    """Detached results of :func:`backward_paths`: the ensemble loss, each path's
    unweighted loss term and logits (major path first)."""

    loss: Tensor
    terms: list[Tensor]
    logits: list[Tensor]


def backward_paths(
    pet: PETModel,
    loss: EnsembleLoss,
    x: Tensor,
    targets: Tensor,
    teacher_logits: Tensor | None,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> PathsResult:
    """Accumulate the gradient of the ensemble loss (eq. 6) into ``pet``'s parameters.

    The loss is a weighted sum over paths, so its gradient is the sum of each weighted
    term's gradient: each path runs forward and backward before the next starts, which
    keeps one path's activations in memory instead of all of them (and is faster on the
    CPU). ``backward`` lets Lightning's ``manual_backward`` (precision, scaling) do it.
    """
    weights = loss.weights(pet.num_paths)
    labels = loss.labels(pet.num_paths)
    terms, logits = [], []
    for i, (weight, label) in enumerate(zip(weights, labels, strict=True)):
        with pet.path(i):
            out = pet(x)
        term = loss.term(out, targets, teacher_logits, label)
        backward(term * weight)
        terms.append(term.detach())
        logits.append(out.detach())
    total = sum(w * t for w, t in zip(weights, terms, strict=True))
    return PathsResult(torch.as_tensor(total), terms, logits)
