"""Spiking neurons: the ST-BIF neuron of SpikeZIP (paper eq. 1) and the plain IF neuron.

Each neuron's equations live in pure functions: :func:`stbif_transition` and
:func:`if_transition` take the state and the step's input and return the output and the
next state, ``step(state, x) -> (out, state)`` (the form of Norse's functional API), so a
compiler can fuse a step into one kernel; :func:`stbif_step` and :func:`if_step` are the
same equations writing into recycled buffers, the eager path. The modules are thin
stateful wrappers that the simulator resets before every input. Any subclass of
:class:`SpikingNeuron` can stand in a converted network: the simulator, the equivalence
check, the energy meter and the per-T measurement only use its interface.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikezip.errors import SpikeZIPError


class CompileError(SpikeZIPError, RuntimeError):
    """The compiled backend cannot run on this machine; the message says what to use."""


class NeuronState(NamedTuple):
    """What a layer of neurons carries from one step to the next, in the input's shape
    (batch first): the membrane ``v``, the signed spike count ``count`` (ST-BIF's tracer
    ``S``) and the last step's spikes ``spike`` (in ``{-1, 0, 1}``)."""

    v: Tensor
    count: Tensor
    spike: Tensor


def stbif_transition(
    state: NeuronState, x: Tensor, threshold: Tensor, tracer_min: int, tracer_max: int
) -> tuple[Tensor, NeuronState]:
    """One time-step of ST-BIF neurons as a pure function (:func:`stbif_step`'s
    equations): returns ``(out, next_state)`` with ``out = spike * Vthr``.

    Bit for bit the eager step's result: ``spike * Vthr`` is exact for ``spike`` in
    ``{-1, 0, 1}``, so ``V - spike * Vthr`` rounds once however it is evaluated (fused
    multiply-add or not), and the tracer holds small integers.
    """
    v = state.v + x
    candidate = (v >= threshold).to(v.dtype) - (v < 0).to(v.dtype)
    count = (state.count + candidate).clamp(tracer_min, tracer_max)
    spike = count - state.count
    v = v - spike * threshold
    return spike * threshold, NeuronState(v, count, spike)


def integer_stbif_transition(
    state: NeuronState, x: Tensor, threshold: Tensor, tracer_min: int, tracer_max: int
) -> tuple[Tensor, NeuronState]:
    """:func:`stbif_transition` of an integer SNN: the output is the spike itself (its
    unit is folded into the next layer's integer weights)."""
    _, following = stbif_transition(state, x, threshold, tracer_min, tracer_max)
    return following.spike, following


def if_transition(state: NeuronState, x: Tensor, threshold: Tensor) -> tuple[Tensor, NeuronState]:
    """One time-step of IF neurons (:func:`if_step`) as a pure function; returns
    ``(out, next_state)`` as :func:`stbif_transition` does."""
    v = state.v + x
    spike = (v >= threshold).to(v.dtype)
    v = v - spike * threshold
    return spike * threshold, NeuronState(v, state.count + spike, spike)


def _write_through(transition: Callable, state: NeuronState, out: Tensor, x: Tensor, *constants):
    """``transition`` with its results written into ``state``'s tensors and ``out``."""
    result, following = transition(state, x, *constants)
    for old, new in zip(state, following, strict=True):
        old.copy_(new)
    out.copy_(result)


def _compile_errors() -> tuple[type[Exception], ...]:
    """What torch.compile raises when it cannot build a kernel (looked up when one is
    raised: the compiler's modules load only with the compiled backend)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor import exc

    return (TorchDynamoException, exc.InductorError, exc.CppCompileError, exc.InvalidCxxCompiler)


@functools.cache
def compiled(transition: Callable) -> Callable:
    """``transition`` compiled by ``torch.compile`` (inductor, on the CPU and the GPU), as
    ``fn(state, out, x, *constants)``: the whole neuron update and its output in one fused
    kernel per layer shape that reads the state and the input once and writes the next
    state and the output in place (fresh activation-sized tensors cost page faults on
    the CPU). Shapes are dynamic, so a batch that shrinks as samples settle does not
    recompile. Compiled once per process, on first use."""
    return torch.compile(
        functools.partial(_write_through, transition), dynamic=True, fullgraph=True
    )


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
    so far) and :meth:`accumulated`. State is created on the
    first step after :meth:`reset`; the simulator resets before every input.

    ``batch_state`` names the attributes that hold one row per sample (batch first):
    what the simulator keeps of a sample that is still running when others have settled
    (:func:`select_rows`). A subclass that adds per-sample state lists it there.
    :meth:`transition` gives the class's pure step, or None for a class that only runs
    eagerly; with :meth:`use_compiled` the layer runs it compiled.
    """

    spikezip_leaf = True  # one node in a torch.fx graph, not traced into
    spiking = True  # what the converter refuses to convert a second time
    batch_state: tuple[str, ...] = ("v", "count", "spike", "_spare", "_out")
    compiled = False  # whether the layer runs its pure step compiled (use_compiled)

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
        self._out: Tensor | None = None

    def _init_state(self, x: Tensor) -> None:
        self.v = torch.full_like(x, self.start) * self.threshold
        self.count = torch.zeros_like(x)
        self.spike = torch.empty_like(x)

    def transition(self) -> tuple[Callable, tuple] | None:
        """The layer's pure step and its constants, ``(fn, constants)`` with
        ``fn(state, x, *constants) -> (out, state)`` (e.g. :func:`stbif_transition`
        with the threshold and tracer bounds); None: this class runs eagerly only."""
        return None

    def use_compiled(self, on: bool = True) -> bool:
        """Run the pure step compiled (True) or eagerly (False); returns whether the layer
        runs compiled now (a class without a pure step stays eager)."""
        self.compiled = bool(on) and self.transition() is not None
        return self.compiled

    def _compiled_step(self, x: Tensor) -> Tensor:
        """One compiled step, the state updated in place; returns the output, in a buffer
        the next step overwrites (what reads it, the next layer, reads it at once)."""
        if self.v is None:
            self._init_state(x)
            self._out = torch.empty_like(x)
        fn, constants = self.transition()
        try:
            compiled(fn)(NeuronState(self.v, self.count, self.spike), self._out, x, *constants)
        except _compile_errors() as error:  # inductor could not build its kernel here
            raise CompileError(
                f"the compiled backend could not build the step of {type(self).__name__} "
                f"on {x.device} ({type(error).__name__}: {str(error).strip()[:300]}); it "
                "needs a working C++ compiler on the CPU (Triton on a GPU). Use the eager "
                "backend (snn.backend=eager, to_snn(..., backend='eager')), which gives "
                "the same results"
            ) from error
        return self._out

    @property
    def level_unit(self) -> Tensor:
        """What one level of the neuron's output is worth: ``Vthr`` (one spike)."""
        return self.threshold

    def accumulated(self, out: Tensor | None = None) -> Tensor:
        """Total output so far, ``count * Vthr`` (written into ``out`` if given)."""
        if self.count is None:
            raise RuntimeError(f"{type(self).__name__} has no state: simulate an input first")
        return torch.mul(self.count, self.threshold, out=out)


def select_rows(module: nn.Module, index: Tensor, batch: int) -> None:
    """Keep the given samples (``index`` into the current ``batch`` samples) of every
    per-sample state of ``module`` (the attributes its ``batch_state`` names: a neuron
    layer's, an accumulating operator's); a state of ``k * batch`` rows holds ``k``
    consecutive rows per sample."""
    for name in module.batch_state:
        setattr(module, name, take_rows(getattr(module, name, None), index, batch))


def take_rows(value, index: Tensor, batch: int):
    """The rows of the samples ``index`` (of ``batch``) of a per-sample state: a tensor
    of ``k * batch`` rows (``k`` consecutive rows per sample), a list of them, or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return type(value)(take_rows(v, index, batch) for v in value)
    rows = value.shape[0]
    if rows == batch:
        return value.index_select(0, index)
    k = rows // batch
    grouped = value.reshape(batch, k * value[0].numel()).index_select(0, index)
    return grouped.reshape(len(index) * k, *value.shape[1:])


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

    def transition(self):
        if type(self).step is not STBIF.step:  # a subclass with its own step runs it eagerly
            return None
        return stbif_transition, (self.threshold, self.tracer_min, self.levels)

    def step(self, x: Tensor) -> None:
        """One time-step of the state (membrane, tracer, :attr:`spike`), no output."""
        if self.compiled:
            self._compiled_step(x)
            return
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
        if self.compiled:
            return self._compiled_step(x)
        self.step(x)
        return self.spike * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, levels={self.levels}"


class IntegerSTBIF(STBIF):
    """ST-BIF neurons of an integer SNN (``pet.weight_bits``): integer thresholds ``m``
    (one per channel, ``[C, 1, ...]``), ``V0 = floor(m / 2)``, and each spike's output is
    the spike itself (``+1`` / ``-1``): the next layer's integer weights carry its unit.
    The membrane and the tracer are integers of ``state_dtype`` (int32, or int64 where the
    network's accumulator bound needs it); the input arrives as the exact integers the
    float64 affine layers compute, and :attr:`spike` is handed on in the input's dtype.
    After the simulation the tracer is the integer Q-ReLU's level
    (:class:`spikezip.quant.integer.IntQReLU`), bit for bit. Runs eagerly."""

    def __init__(
        self,
        threshold: Tensor | float,
        levels: int,
        tracer_min: int = 0,
        state_dtype: torch.dtype = torch.int64,
    ):
        super().__init__(threshold, levels, tracer_min)
        self.state_dtype = state_dtype

    def _init_state(self, x: Tensor) -> None:
        self._theta = self.threshold.to(self.state_dtype)
        self.v = torch.div(self._theta, 2, rounding_mode="floor").expand_as(x).clone()
        self.count = torch.zeros_like(x, dtype=self.state_dtype)
        self.spike = torch.empty_like(x)

    @property
    def level_unit(self) -> Tensor:
        return torch.ones((), dtype=self.threshold.dtype, device=self.threshold.device)

    def transition(self):
        return None  # integer state: the eager step

    def step(self, x: Tensor) -> None:
        if self.v is None:
            self._init_state(x)
        v = self.v + x.to(self.state_dtype)  # x holds integers: exact
        up = (v >= self._theta) & (self.count < self.levels)
        down = (v < 0) & (self.count > self.tracer_min)
        spike = up.to(self.state_dtype) - down.to(self.state_dtype)
        self.v = v - spike * self._theta
        self.count = self.count + spike
        self.spike = spike.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        self.step(x)
        return self.spike

    def accumulated(self, out: Tensor | None = None) -> Tensor:
        """The levels so far: the tracer, in the simulation's float dtype (written into
        ``out`` if given)."""
        if self.count is None:
            raise RuntimeError(f"{type(self).__name__} has no state: simulate an input first")
        if out is None:
            return self.count.to(self.threshold.dtype)
        return out.copy_(self.count)

    def extra_repr(self) -> str:
        kind = str(self.state_dtype).replace("torch.", "")
        return f"channels={self.threshold.numel()}, levels={self.levels}, {kind}"


class IFNeuron(SpikingNeuron):
    """Integrate-and-fire neurons with reset by subtraction and start potential
    ``V0 = start * Vthr`` (QCFS uses ``start = 0.5``). Unsigned spikes, no tracer
    bounds: fed a constant input, the spike rate approximates a clipped ReLU."""

    def transition(self):
        # A subclass that changes the step (a gate, a probe) runs eagerly.
        if type(self).forward is not IFNeuron.forward:
            return None
        return if_transition, (self.threshold,)

    def forward(self, x: Tensor) -> Tensor:
        if self.compiled:
            return self._compiled_step(x)
        if self.v is None:
            self._init_state(x)
        self.spike, self.v = if_step(self.v, x, self.threshold, out=(self.spike, self.v))
        self.count.add_(self.spike)
        return self.spike * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, start={self.start:g}"
