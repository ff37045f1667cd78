"""The ensemble loss of PET (paper eq. 6) with distillation from the full-precision ANN."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from spikezip.pet.config import Label, PETConfig
from spikezip.tasks.base import Task
from spikezip.tasks.classification import Classification


class EnsembleLoss(nn.Module):
    """``L = L_mp + alpha * sum_i (n_i / n_mp) * L_i`` over the sub-paths i.

    Each term is, by its label type: ``soft``, the task's distillation from the teacher
    (for classification ``KL(softmax(teacher / tau) || softmax(logits / tau)) * tau^2``);
    ``hard``, the task's loss against the labels (cross-entropy); ``mixed``, their sum.
    ``config.main_label`` sets the major path's term (the paper: soft, from the
    full-precision teacher), ``config.sub_label`` the sub-paths'. ``config.levels`` gives
    the ``n_i / n_mp`` weights.
    """

    def __init__(self, config: PETConfig | None = None, task: Task | None = None):
        super().__init__()
        self.config = config or PETConfig()
        self.task = task or Classification()

    @property
    def levels(self) -> list[int]:
        return self.config.levels

    def term(self, logits: Tensor, targets: Tensor, teacher: Tensor | None, label: Label) -> Tensor:
        """One path's loss for label type ``label``."""
        terms = []
        if label in (Label.hard, Label.mixed):
            terms.append(self.task.loss(logits, targets))
        if label in (Label.soft, Label.mixed):
            if teacher is None:
                raise ValueError(f"label type {label.value!r} needs the teacher's logits")
            terms.append(self.task.distillation(logits, teacher, self.config.temperature))
        return sum(terms[1:], terms[0])

    def labels(self, paths: int) -> list[Label]:
        """Label type of each path's term, major path first."""
        return [self.config.main_label] + [self.config.sub_label] * (paths - 1)

    def weights(self, paths: int) -> list[float]:
        """Each path's weight in eq. 6: 1 for the major path, ``alpha * n_i / n_mp`` after."""
        if paths != len(self.levels):
            raise ValueError(f"EnsembleLoss got {paths} paths for levels {self.levels}")
        return [1.0] + [self.config.alpha * n_i / self.levels[0] for n_i in self.levels[1:]]

    def per_path(
        self, path_logits: Sequence[Tensor], targets: Tensor, teacher_logits: Tensor | None
    ) -> list[Tensor]:
        """Each path's unweighted term, major path first."""
        return [
            self.term(logits, targets, teacher_logits, label)
            for logits, label in zip(path_logits, self.labels(len(path_logits)), strict=True)
        ]

    def combine(self, terms: Sequence[Tensor]) -> Tensor:
        """Weighted sum of the per-path terms (eq. 6)."""
        weights = self.weights(len(terms))
        total = terms[0]
        for weight, term in zip(weights[1:], terms[1:], strict=True):
            total = total + weight * term
        return total

    def forward(
        self, path_logits: Sequence[Tensor], targets: Tensor, teacher_logits: Tensor | None = None
    ) -> Tensor:
        return self.combine(self.per_path(path_logits, targets, teacher_logits))
