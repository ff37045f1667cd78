"""The ensemble loss of PET (paper eq. 6) with distillation from the full-precision ANN."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

LABELS = ("soft", "hard", "mixed")


class EnsembleLoss(nn.Module):
    """``L = L_mp + alpha * sum_i (n_i / n_mp) * L_i`` over the sub-paths i.

    Each term is, by its label type: ``soft``, distillation
    ``KL(softmax(teacher / tau) || softmax(logits / tau)) * tau^2`` (batch mean);
    ``hard``, cross-entropy with the labels; ``mixed``, their sum. ``main_label`` sets the
    major path's term (the paper: soft, from the full-precision teacher), ``sub_label``
    the sub-paths'.

    Args:
        levels: the paths' levels, major path first; needed for the ``n_i / n_mp`` weights
            when there are sub-paths.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        sub_label: str = "soft",
        temperature: float = 1.0,
        main_label: str = "soft",
        levels: Sequence[int] | None = None,
    ):
        super().__init__()
        for name, value in (("sub_label", sub_label), ("main_label", main_label)):
            if value not in LABELS:
                raise ValueError(f"{name} must be one of {LABELS}, got {value!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.sub_label, self.main_label = sub_label, main_label
        self.levels = list(levels) if levels is not None else None

    def term(self, logits: Tensor, targets: Tensor, teacher: Tensor | None, label: str) -> Tensor:
        """One path's loss for label type ``label``."""
        loss = logits.new_zeros(())
        if label in ("hard", "mixed"):
            loss = loss + F.cross_entropy(logits, targets)
        if label in ("soft", "mixed"):
            if teacher is None:
                raise ValueError(f"label type {label!r} needs the teacher's logits")
            tau = self.temperature
            kl = F.kl_div(
                F.log_softmax(logits / tau, -1),
                F.log_softmax(teacher.detach() / tau, -1),
                reduction="batchmean",
                log_target=True,
            )
            loss = loss + kl * tau**2
        return loss

    def labels(self, paths: int) -> list[str]:
        """Label type of each path's term, major path first."""
        return [self.main_label] + [self.sub_label] * (paths - 1)

    def weights(self, paths: int) -> list[float]:
        """Each path's weight in eq. 6: 1 for the major path, ``alpha * n_i / n_mp`` after."""
        if paths == 1:
            return [1.0]
        if self.levels is None or len(self.levels) != paths:
            raise ValueError(
                f"EnsembleLoss got {paths} paths but levels={self.levels}; pass the "
                "paths' levels (major first) to weight the sub-paths by n_i / n_mp"
            )
        return [1.0] + [self.alpha * n_i / self.levels[0] for n_i in self.levels[1:]]

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
