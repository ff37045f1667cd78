"""How input and biases enter an SNN over time (paper §3.2), one choice of the conversion.

- ``even`` (SpikeZIP): input ``X0 / T_off`` and every bias ``b / T_off`` on steps
  ``1..T_off`` (``T_off = n``), nothing after. Exact at equilibrium.
- ``once``: everything at step 1 (``T_off = 1``). Exact at equilibrium too.
- ``constant`` (rate-coded conversions such as QCFS): the analog input and every bias at
  full size on every step. Never settles; the output *rate* ``total / t`` approximates
  the ANN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spikezip.settings import Choice


class Encoding(Choice):
    even = "even"
    once = "once"
    constant = "constant"


@dataclass(frozen=True)
class Release:
    """A release schedule: input and biases enter divided by :attr:`divisor` on steps
    ``1..steps`` (whole, on every step, when ``steps`` is None)."""

    steps: int | None
    # Integer shares (an integer SNN): step t of d releases floor(t X / d) - floor((t-1) X / d)
    # of a total X, so every share is an integer and the d shares sum to X exactly.
    integer: bool = False

    def __post_init__(self):
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"release steps must be >= 1, got {self.steps}")

    @property
    def divisor(self) -> int:
        """One step releases ``1 / divisor`` of the input and of each bias (a division,
        not a product with ``1 / n``: the same rounding as the QANN's own arithmetic)."""
        return 1 if self.steps is None else self.steps

    def portion(self, total: Tensor, t: int) -> Tensor:
        """What step ``t`` (1-based, a releasing step) receives of ``total``: ``total /
        divisor``, or with :attr:`integer` the integer share (exact in float64 for
        integers below ``2 ** 53 / divisor``)."""
        d = self.divisor
        if not self.integer or d == 1:
            return total / d
        return torch.floor(total * t / d) - torch.floor(total * (t - 1) / d)

    def releasing(self, t: int) -> bool:
        """Whether step ``t`` (1-based) receives input and bias."""
        return self.steps is None or t <= self.steps

    def released_steps(self, t: int) -> int:
        """How many of the steps ``1..t`` received input."""
        return t if self.steps is None else min(t, self.steps)

    def estimates(self, totals: Tensor, overhead: int = 0) -> Tensor:
        """:meth:`estimate` of ``totals [T, B, ...]``, the accumulated outputs after
        steps ``1..T``, the first ``overhead`` of which counted nothing (a method's own
        steps: the rate is over the steps after them)."""
        if self.steps is not None:
            return totals
        steps = torch.arange(1, len(totals) + 1, device=totals.device, dtype=totals.dtype)
        steps = (steps - overhead).clamp_min(1)
        return totals / steps.view((-1,) + (1,) * (totals.dim() - 1))

    def estimate(self, total: Tensor, t: int) -> Tensor:
        """What the accumulated ``total`` after ``t`` steps says the ANN computed: the
        total itself when the input is released once (it converges to the ANN's value),
        the rate ``total / t`` when the input keeps coming."""
        return total / t if self.steps is None else total


def release_for(
    encoding: Encoding | str, levels: int, release_steps: int | None = None, integer: bool = False
) -> Release:
    """The schedule of ``encoding`` for a network whose largest quantization level is
    ``levels`` (``T_off = n`` for ``even`` unless ``release_steps`` overrides it);
    ``integer``: in integer shares (an integer SNN)."""
    encoding = Encoding(encoding)
    if release_steps is not None and encoding is not Encoding.even:
        raise ValueError("release_steps applies to encoding='even' only")
    if integer and encoding is Encoding.constant:
        raise ValueError("an integer SNN releases its input once or evenly, not constantly")
    if encoding is Encoding.even:
        return Release(release_steps if release_steps is not None else levels, integer)
    return Release(1 if encoding is Encoding.once else None, integer)
