"""The ST-BIF neuron (bipolar integrate-and-fire with spike tracing, paper eq. 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def stbif_step(
    v: Tensor, s: Tensor, x: Tensor, threshold: Tensor, s_min: float, s_max: float
) -> tuple[Tensor, Tensor, Tensor]:
    """One time-step of ST-BIF neurons; returns ``(spike, v, s)``.

    ``V <- V + x``; then ``spike = +1`` if ``V >= Vthr`` and ``S < S_max``,
    ``-1`` if ``V < 0`` and ``S > S_min``, else 0 (at most one spike per step);
    ``V <- V - spike * Vthr``; ``S <- S + spike``.

    At rest after a total input X (``V0 = Vthr / 2``) the tracer settles at
    ``S = clip(floor(X / Vthr + 0.5), S_min, S_max)``: the Q-ReLU's integer level.
    ``v``, ``s`` and ``x`` share one shape; ``s`` holds integer counts in the dtype of ``v``.

    ``v`` is updated in place and returned (the caller hands it over): each fresh
    activation-sized tensor costs page faults on the CPU, and the simulator's step must
    stay close to a QANN forward.
    """
    v.add_(x)
    # Candidate spike from the membrane alone (V >= Vthr > 0 and V < 0 exclude each
    # other), then the tracer bounds: clipping S + candidate cancels a spike at a bound.
    candidate = (v >= threshold).to(v.dtype).masked_fill_(v < 0, -1.0)
    s_next = candidate.add_(s).clamp_(s_min, s_max)
    spike = s_next - s
    v.addcmul_(spike, threshold, value=-1.0)
    return spike, v, s_next


class STBIF(nn.Module):
    """Stateful ST-BIF neurons replacing one Q-ReLU call site.

    ``Vthr = s`` (the Q-ReLU scale), ``S_max = n`` (its levels), ``S_min = 0``,
    ``V0 = Vthr / 2``. Each call is one time-step: input ``x_t`` of any shape, output
    ``spike_t * Vthr`` of the same shape. After the simulation ``tracer * threshold`` is
    the neuron's accumulated output. State is created on the first step after
    :meth:`reset`; the simulator resets before every input.
    """

    spikezip_leaf = True

    def __init__(self, threshold: Tensor | float, levels: int, s_min: int = 0):
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold).detach().clone())
        self.levels = int(levels)
        self.s_min = int(s_min)
        self.reset()

    def reset(self) -> None:
        """Forget the membrane, the tracer and the last spikes."""
        self.v: Tensor | None = None
        self.tracer: Tensor | None = None
        self.spike: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None:
            self.v = torch.full_like(x, 0.5) * self.threshold
            self.tracer = torch.zeros_like(x)
        self.spike, self.v, self.tracer = stbif_step(
            self.v, self.tracer, x, self.threshold, self.s_min, self.levels
        )
        return self.spike * self.threshold

    def accumulated(self) -> Tensor:
        """Total output so far, ``tracer * Vthr`` (the Q-ReLU value at equilibrium)."""
        if self.tracer is None:
            raise RuntimeError("STBIF has no state: simulate an input first")
        return self.tracer * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, levels={self.levels}"
