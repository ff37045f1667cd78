"""Spiking neurons: the ST-BIF neuron of SpikeZIP (paper eq. 1) and the plain IF neuron.

Each neuron's equations live in one pure step function (``stbif_step``, ``if_step``); the
modules are thin stateful wrappers that the simulator resets before every input. Any
subclass of :class:`SpikingNeuron` can stand in a converted network: the simulator, the
equivalence check, the energy meter and the per-T measurement only use its interface.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def stbif_step(
    v: Tensor,
    tracer: Tensor,
    x: Tensor,
    threshold: Tensor,
    tracer_min: float,
    tracer_max: float,
    out: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One time-step of ST-BIF neurons; returns ``(spike, v_next, tracer_next)``.

    ``V <- V + x``; then ``spike = +1`` if ``V >= Vthr`` and ``S < S_max``,
    ``-1`` if ``V < 0`` and ``S > S_min``, else 0 (at most one spike per step);
    ``V <- V - spike * Vthr``; ``S <- S + spike``. ``S`` is the spike tracer
    (``tracer``), bounded by ``S_min = tracer_min`` and ``S_max = tracer_max``.

    At rest after a total input X (``V0 = Vthr / 2``) the tracer settles at
    ``S = clip(floor(X / Vthr + 0.5), S_min, S_max)``: the Q-ReLU's integer level.
    ``v``, ``tracer`` and ``x`` share one shape; the tracer holds integer counts in the
    dtype of ``v``.

    Pure by default. ``out = (spike, v_next, tracer_next)`` writes the results into given
    tensors instead (``v_next`` may be ``v`` itself, ``tracer_next`` must not be
    ``tracer``): fresh activation-sized tensors cost page faults on the CPU, so the
    simulator recycles them.
    """
    spike, v_next, t_next = out if out is not None else (torch.empty_like(v) for _ in range(3))
    torch.add(v, x, out=v_next)
    # Candidate spike from the membrane alone (V >= Vthr > 0 and V < 0 exclude each
    # other), then the tracer bounds: clipping S + candidate cancels a spike at a bound.
    torch.ge(v_next, threshold, out=t_next)
    torch.lt(v_next, 0, out=spike)
    t_next.sub_(spike).add_(tracer).clamp_(tracer_min, tracer_max)
    torch.sub(t_next, tracer, out=spike)
    v_next.addcmul_(spike, threshold, value=-1.0)
    return spike, v_next, t_next


def if_step(
    v: Tensor, x: Tensor, threshold: Tensor, out: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """One time-step of integrate-and-fire neurons with reset by subtraction; returns
    ``(spike, v_next)``.

    ``V <- V + x``; ``spike = 1`` if ``V >= Vthr`` else 0; ``V <- V - spike * Vthr``.
    Unsigned (no negative spikes) and unbounded: what rate-coded conversions (Rueckauer
    et al. 2017; QCFS, Bu et al. 2022) use. ``out = (spike, v_next)`` as in
    :func:`stbif_step`.
    """
    spike, v_next = out if out is not None else (torch.empty_like(v), torch.empty_like(v))
    torch.add(v, x, out=v_next)
    torch.ge(v_next, threshold, out=spike)
    v_next.addcmul_(spike, threshold, value=-1.0)
    return spike, v_next


class SpikingNeuron(nn.Module):
    """A layer of stateful neurons replacing one activation call site of an ANN.

    Each call is one time-step: input ``x_t`` of any shape, output ``spike_t * Vthr`` of
    the same shape. What the rest of SpikeZIP reads: ``threshold`` (``Vthr``), ``spike``
    (the last step's spikes, in ``{-1, 0, 1}``), ``count`` (the signed number of spikes
    so far) and :meth:`accumulated`. State is created on the first step after
    :meth:`reset`; the simulator resets before every input.
    """

    spikezip_leaf = True  # one node in a torch.fx graph, not traced into
    spiking = True  # what the converter refuses to convert a second time

    def __init__(self, threshold: Tensor | float, start: float = 0.5):
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold).detach().clone())
        self.start = float(start)  # V0 = start * Vthr
        self.reset()

    def reset(self) -> None:
        """Forget the membrane, the spike count and the last spikes."""
        self.v: Tensor | None = None
        self.count: Tensor | None = None
        self.spike: Tensor | None = None
        self._spare: Tensor | None = None

    def _init_state(self, x: Tensor) -> None:
        self.v = torch.full_like(x, self.start) * self.threshold
        self.count = torch.zeros_like(x)
        self.spike = torch.empty_like(x)

    def accumulated(self) -> Tensor:
        """Total output so far, ``count * Vthr``."""
        if self.count is None:
            raise RuntimeError(f"{type(self).__name__} has no state: simulate an input first")
        return self.count * self.threshold


class STBIF(SpikingNeuron):
    """ST-BIF neurons (SpikeZIP): ``Vthr = s`` (the Q-ReLU scale), ``S_max = n`` (its
    levels), ``S_min = 0``, ``V0 = Vthr / 2``. The spike tracer ``S`` is :attr:`tracer`;
    after the simulation ``tracer * Vthr`` equals the Q-ReLU's output."""

    def __init__(self, threshold: Tensor | float, levels: int, tracer_min: int = 0):
        super().__init__(threshold, start=0.5)
        self.levels = int(levels)
        self.tracer_min = int(tracer_min)

    @property
    def tracer(self) -> Tensor | None:
        """The spike tracer ``S`` (the signed spike count)."""
        return self.count

    def step(self, x: Tensor) -> None:
        """One time-step of the state (membrane, tracer, :attr:`spike`), no output."""
        if self.v is None:
            self._init_state(x)
            self._spare = torch.empty_like(x)
        # The membrane is updated in place; the old tracer's memory becomes next step's
        # spare. No activation-sized allocation per step but the output.
        self.spike, self.v, tracer = stbif_step(
            self.v,
            self.count,
            x,
            self.threshold,
            self.tracer_min,
            self.levels,
            out=(self.spike, self.v, self._spare),
        )
        self._spare, self.count = self.count, tracer

    def forward(self, x: Tensor) -> Tensor:
        self.step(x)
        return self.spike * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, levels={self.levels}"


class IFNeuron(SpikingNeuron):
    """Integrate-and-fire neurons with reset by subtraction and start potential
    ``V0 = start * Vthr`` (QCFS uses ``start = 0.5``). Unsigned spikes, no tracer
    bounds: fed a constant input, the spike rate approximates a clipped ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None:
            self._init_state(x)
        self.spike, self.v = if_step(self.v, x, self.threshold, out=(self.spike, self.v))
        self.count.add_(self.spike)
        return self.spike * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, start={self.start:g}"
