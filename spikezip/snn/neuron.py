"""The ST-BIF neuron (bipolar integrate-and-fire with spike tracing, paper eq. 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def stbif_step(
    v: Tensor,
    s: Tensor,
    x: Tensor,
    threshold: Tensor,
    s_min: float,
    s_max: float,
    out: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One time-step of ST-BIF neurons; returns ``(spike, v_next, s_next)``.

    ``V <- V + x``; then ``spike = +1`` if ``V >= Vthr`` and ``S < S_max``,
    ``-1`` if ``V < 0`` and ``S > S_min``, else 0 (at most one spike per step);
    ``V <- V - spike * Vthr``; ``S <- S + spike``.

    At rest after a total input X (``V0 = Vthr / 2``) the tracer settles at
    ``S = clip(floor(X / Vthr + 0.5), S_min, S_max)``: the Q-ReLU's integer level.
    ``v``, ``s`` and ``x`` share one shape; ``s`` holds integer counts in the dtype of ``v``.

    Pure by default. ``out = (spike, v_next, s_next)`` writes the results into given
    tensors instead (``v_next`` may be ``v`` itself, ``s_next`` must not be ``s``): fresh
    activation-sized tensors cost page faults on the CPU, so the simulator recycles them.
    """
    spike, v_next, s_next = out if out is not None else (torch.empty_like(v) for _ in range(3))
    torch.add(v, x, out=v_next)
    # Candidate spike from the membrane alone (V >= Vthr > 0 and V < 0 exclude each
    # other), then the tracer bounds: clipping S + candidate cancels a spike at a bound.
    torch.ge(v_next, threshold, out=s_next)
    torch.lt(v_next, 0, out=spike)
    s_next.sub_(spike).add_(s).clamp_(s_min, s_max)
    torch.sub(s_next, s, out=spike)
    v_next.addcmul_(spike, threshold, value=-1.0)
    return spike, v_next, s_next


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
        self._spare: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None:
            self.v = torch.full_like(x, 0.5) * self.threshold
            self.tracer = torch.zeros_like(x)
            self.spike, self._spare = torch.empty_like(x), torch.empty_like(x)
        # The membrane is updated in place; the old tracer's memory becomes next step's
        # spare. No activation-sized allocation per step but the output.
        self.spike, self.v, tracer = stbif_step(
            self.v, self.tracer, x, self.threshold, self.s_min, self.levels,
            out=(self.spike, self.v, self._spare),
        )  # fmt: skip
        self._spare, self.tracer = self.tracer, tracer
        return self.spike * self.threshold

    def accumulated(self) -> Tensor:
        """Total output so far, ``tracer * Vthr`` (the Q-ReLU value at equilibrium)."""
        if self.tracer is None:
            raise RuntimeError("STBIF has no state: simulate an input first")
        return self.tracer * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, levels={self.levels}"
