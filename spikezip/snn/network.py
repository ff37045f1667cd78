"""The converted SNN and its simulator: accumulated outputs per time-step, equilibrium."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from spikezip.settings import Choice, choice
from spikezip.snn.encoding import Encoding, Release
from spikezip.snn.layers import Released
from spikezip.snn.neuron import SpikingNeuron, select_rows
from spikezip.snn.operators import Accumulating
from spikezip.tracing import node_shapes

# The one default budget of steps to reach equilibrium (conversion proof and evaluation).
MAX_TIMESTEPS = 1000
# With drop_settled, the batch shrinks once at least 1/DROP_FRACTION of its rows have
# settled: gathering the state of the others costs about a pass over it.
DROP_FRACTION = 8


class Backend(Choice):
    """How the neuron layers are stepped (:meth:`SpikingNetwork.use_backend`)."""

    eager = "eager"
    compiled = "compiled"


class _Rows:
    """The accumulated output after each of the first ``keep`` steps, ``[keep, B, ...]``
    per output leaf, preallocated and grown by doubling: no per-step list, no stack."""

    def __init__(self, keep: int, on_output=None):
        self.keep = keep
        self.buffers: list[Tensor] = []
        self.on_output = on_output  # (t, output): handed each step's output, nothing kept
        self.spec = None  # the output's structure, for on_output (set by the first step)
        self.given = 0  # steps handed to on_output so far

    def _reserve(self, steps: int, like: list[Tensor]) -> None:
        have = len(self.buffers[0]) if self.buffers else 0
        if steps <= have:
            return
        size = min(self.keep, max(steps, 2 * have, 16))
        grown = [leaf.new_zeros((size, *leaf.shape)) for leaf in like]
        for new, old in zip(grown, self.buffers, strict=False):
            new[:have] = old
        self.buffers = grown

    def _give(self, t: int, leaves: list[Tensor]) -> None:
        if self.given < t - 1:  # a method's own steps: nothing counted yet
            zeros = tree_unflatten([torch.zeros_like(leaf) for leaf in leaves], self.spec)
            for step in range(self.given + 1, t):
                self.on_output(step, zeros)
        self.on_output(t, tree_unflatten(leaves, self.spec))
        self.given = t

    def add(self, t: int, leaves: list[Tensor]) -> None:
        """Row ``t - 1`` (earlier unwritten rows stay zero: a method's own steps)."""
        if t > self.keep:
            return
        if self.on_output is not None:
            self._give(t, leaves)
            return
        self._reserve(t, leaves)
        for buffer, leaf in zip(self.buffers, leaves, strict=True):
            buffer[t - 1] = leaf

    def hold(self, steps: int, timesteps: int, leaves: list[Tensor]) -> None:
        """Rows ``steps..timesteps - 1`` (steps not run) equal to ``leaves``."""
        end = min(timesteps, self.keep)
        if self.on_output is not None:
            for t in range(steps + 1, end + 1):
                self._give(t, leaves)
        elif end > steps:
            self._reserve(end, leaves)
            for buffer, leaf in zip(self.buffers, leaves, strict=True):
                buffer[steps:end] = leaf

    def result(self, rows: int, leaves: list[Tensor]) -> list[Tensor]:
        if self.on_output is not None:
            rows = 0
        if not self.buffers:
            return [leaf.new_zeros((rows, *leaf.shape)) for leaf in leaves]
        return [buffer[:rows] for buffer in self.buffers]


@dataclass
class Simulation:
    """What one simulation produced.

    Attributes:
        outputs: ``[T, B, ...]`` the network's accumulated output after each step (the
            first ``keep`` steps only, if the run was asked to keep fewer). A network
            with several outputs (a tuple, list or dict of tensors) gives the same
            structure here and in ``final``, one ``[T, B, ...]`` tensor per output.
        t_eq: ``[B]`` (long) per sample, the step after which nothing changes any more
            (the output is final from there); ``-1`` where that was not reached in the
            steps simulated. Never less than ``T_off``.
        final: ``[B, ...]`` the accumulated output after the last step simulated.
        timesteps: the steps simulated.
        spike_counts: if recorded, neuron layer name -> ``[T, B]`` spikes of either sign
            emitted in each step (``|+1|`` and ``|-1|`` both count).
    """

    outputs: Tensor | tuple | list | dict
    t_eq: Tensor
    final: Tensor | tuple | list | dict
    timesteps: int
    spike_counts: dict[str, Tensor] | None = None

    @property
    def at_equilibrium(self) -> Tensor:
        """``[B]`` bool: whether each sample reached equilibrium."""
        return self.t_eq >= 0


class SpikingNetwork(nn.Module):
    """An SNN produced by :func:`spikezip.snn.to_snn`.

    Input ``X0`` of shape ``[B, ...]`` enters as its :class:`Release` says: for the
    paper's ``even`` encoding ``X0 / T_off`` on steps ``1..T_off`` (every bias likewise)
    and zero after. Each step runs the whole graph once: neurons emit at most one spike
    per step and pass ``spike * Vthr`` on in the same step. With ST-BIF neurons the
    accumulated output at equilibrium equals the QANN's output.

    Neuron state is reset at the start of every simulation, so two runs on the same input
    give identical results.
    """

    # Steps a method spends on every input before its output counts (a pre-simulation,
    # an offset detection): 0 here; the first ``overhead`` rows of a simulation's
    # accumulated outputs are zero, so a curve is indexed by the steps a user waits.
    overhead: int = 0
    # Report name -> operator kind (spiking, linear, accumulating), set by to_snn.
    operators: dict[str, str] = {}
    backend: Backend = Backend.eager
    # Samples of the current input still simulated (fewer than the batch once settled
    # samples have left it, with run(..., drop_settled=True)).
    running: int = 0
    # True while a run records the steps after every sample settled without running them
    # (their ``on_step`` sees the state at rest, unchanged).
    resting: bool = False

    def __init__(self, graph: fx.GraphModule, release: Release, encoding: Encoding | str):
        super().__init__()
        self.graph = graph
        self.release = release
        self.encoding = Encoding(encoding)
        # Applied to the input before it is released (an integer SNN's pixel levels).
        self.input_map: nn.Module | None = None

    def prepare(self, x: Tensor, on_step: Callable[[int, SpikingNetwork], None] | None) -> None:
        """What a method does with the input before its output counts: called by
        :meth:`run` after the reset, with the input as one step receives it, when
        :attr:`overhead` > 0; it leaves the neurons in the state the counted steps start
        from, and calls ``on_step(t, self)`` after each of its steps (``t`` in
        ``1..overhead``, so meters count its spikes too)."""

    def _steps(self, x: Tensor, steps: int, on_step=None) -> None:
        """``steps`` steps of the graph, every one fed ``x`` and the biases (an input that
        keeps coming); their outputs are not counted. For :meth:`prepare`."""
        for m in self._released():
            m.begin(self.release.divisor)
            m.releasing = True
        for t in range(1, steps + 1):
            self.graph(x)
            if on_step is not None:
                on_step(t, self)

    def node_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        """Each graph node's output shape for one sample of ``input_shape`` (one step,
        releasing; the state is reset before and after)."""
        self.reset()
        for m in self._released():
            m.begin(1)
            m.releasing = True
        try:
            x = torch.zeros(1, *input_shape, dtype=self.dtype, device=self.device)
            return node_shapes(self.graph, x)
        finally:
            self.reset()

    @property
    def release_steps(self) -> int | None:
        """``T_off``: the steps that receive input (None: every step)."""
        return self.release.steps

    @property
    def neurons(self) -> dict[str, SpikingNeuron]:
        """Neuron layers by their name in the QANN (the activation they replace)."""
        return {n: m for n, m in self.graph.named_modules() if isinstance(m, SpikingNeuron)}

    def _released(self) -> list[Released]:
        return [m for m in self.graph.modules() if isinstance(m, Released)]

    def reset(self) -> None:
        """Reset every neuron's membrane and tracer."""
        for m in self.graph.modules():
            if isinstance(m, (SpikingNeuron, Accumulating)):
                m.reset()

    def _reference(self) -> Tensor | None:
        ref = next((t for t in self.graph.parameters()), None)
        if ref is None:
            ref = next((b for b in self.graph.buffers() if b.is_floating_point()), None)
        return ref

    @property
    def device(self) -> torch.device:
        ref = self._reference()
        return ref.device if ref is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the SNN computes in (inputs must match)."""
        ref = self._reference()
        return ref.dtype if ref is not None else torch.get_default_dtype()

    def _check_input(self, x: Tensor) -> None:
        ref = self._reference()
        if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
            raise TypeError(
                f"input is {x.dtype} on {x.device} but the SNN is {ref.dtype} on "
                f"{ref.device}; convert one of them (e.g. snn.double() and x.double())"
            )

    def use_backend(self, backend: Backend | str) -> SpikingNetwork:
        """Simulate with ``backend``: ``"eager"`` (the reference, every operation as
        written) or ``"compiled"`` (each neuron layer's update and output fused by
        ``torch.compile`` into one kernel that writes in place; identical results, see
        :func:`spikezip.snn.neuron.stbif_transition`). Neuron classes without a pure step
        run eagerly either way. Returns ``self``."""
        self.backend = choice("backend", backend, Backend)
        for neuron in self.neurons.values():
            neuron.use_compiled(self.backend is Backend.compiled)
        return self

    def _stateful(self) -> list[nn.Module]:
        return [m for m in self.graph.modules() if isinstance(m, (SpikingNeuron, Accumulating))]

    def rows_separable(self, x: Tensor) -> bool:
        """Whether samples can leave a running batch of inputs shaped like ``x``: every
        per-sample state (the ``batch_state`` of each neuron layer and accumulating
        operator) and every output holds ``k`` consecutive rows per sample, and no other
        state grows with the batch. Found once per input shape by stepping the network on
        two different samples alone and together (each one's rows must be its own, in
        batch order); a network that mixes samples in its rows (the batch in another
        dimension, or flattened inside another) is simulated whole."""
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        known = self.__dict__.setdefault("_separable", {})
        if key not in known:
            known[key] = self._probe_rows(x)
        return known[key]

    @torch.no_grad()
    def _probe_rows(self, x: Tensor) -> bool:
        def state(inputs: Tensor) -> dict:
            self.reset()
            for m in self._released():
                m.begin(self.release.divisor)
                m.releasing = True
            leaves, _ = tree_flatten(self.graph(inputs))
            found = {"outputs": leaves}
            for name, m in self.graph.named_modules():
                if not isinstance(m, (SpikingNeuron, Accumulating)):
                    continue
                for attr, value in vars(m).items():
                    flat = list(value) if isinstance(value, (list, tuple)) else [value]
                    if flat and all(isinstance(v, Tensor) for v in flat):
                        found[name, attr] = [v.clone() for v in flat]
            return found

        # Two different samples, alone and together: each one's rows of every state must be
        # the ones it has alone, consecutive and in batch order (shapes alone cannot tell a
        # [B * N] layout from an [N * B] one).
        a = x[:1]
        b = torch.randn_like(a) * a.std(correction=0).clamp_min(1) + a.mean()  # 1 value: std 0
        try:
            alone, other, both = state(a), state(b), state(torch.cat([a, b]))
        except Exception:  # a network that cannot run on a smaller batch: simulate it whole
            return False
        finally:
            self.reset()
        if not (alone.keys() == other.keys() == both.keys()):
            return False
        declared = {
            (name, attr)
            for name, m in self.graph.named_modules()
            for attr in getattr(m, "batch_state", ())
        }
        for key, tensors in both.items():
            for i, together in enumerate(tensors):
                first, second = alone[key][i], other[key][i]
                if key != "outputs" and key not in declared:
                    if together.shape != first.shape:  # follows the batch, nobody moves it
                        return False
                    continue
                if key == "outputs" and (first.dim() == 0 or len(first) != 1):
                    return False
                if first.dim() == 0 or together.shape[0] != 2 * first.shape[0]:
                    return False
                if first.is_floating_point():
                    scale = max(float(together.abs().max()), 1.0)
                    same = torch.allclose(together, torch.cat([first, second]), 1e-5, 1e-6 * scale)
                else:
                    same = torch.equal(together, torch.cat([first, second]))
                if not same:
                    return False
        return True

    @torch.no_grad()
    def run(
        self,
        x: Tensor,
        timesteps: int,
        stop_at_equilibrium: bool = False,
        record_spikes: bool = False,
        on_step: Callable[[int, SpikingNetwork], None] | None = None,
        fast_forward: bool = True,
        keep: int | None = None,
        drop_settled: bool = False,
        check_every: int | None = None,
        on_output: Callable[[int, Tensor | tuple | list | dict], None] | None = None,
    ) -> Simulation:
        """Simulate ``timesteps`` steps of input ``x`` (``[B, ...]``) in one pass.

        Args:
            stop_at_equilibrium: stop early once every sample is at equilibrium (the
                returned ``outputs`` then has fewer than ``timesteps`` rows).
            record_spikes: also return the spike count of every neuron layer per step.
            on_step: called as ``on_step(t, self)`` after each step ``t`` (1-based),
                e.g. to read ``neuron.accumulated()`` for feature-map curves.
            fast_forward: once every sample is at equilibrium, record the remaining steps
                without running them (nothing can change any more). ``False`` runs every
                step, for timing or for the sceptical.
            keep: keep the accumulated outputs of the first ``keep`` steps only (and the
                final one): a long budget to reach equilibrium then costs no memory.
            drop_settled: samples at equilibrium leave the batch (their outputs are
                final), so the steps cost what the samples still running need; where the
                network allows it (:meth:`rows_separable`). The neurons' state after the
                run then holds the samples still running only, and ``on_step`` sees those
                rows.
            check_every: look for samples at equilibrium every this many steps (a
                synchronisation with the host on a GPU); default 1 on the CPU, 8 on a GPU.
                ``stop_at_equilibrium`` then stops up to ``check_every - 1`` steps after
                the last sample settled (``t_eq`` is exact either way).
            on_output: called as ``on_output(t, output)`` with the accumulated output
                after each of the first ``keep`` steps (every sample's, in the network's
                output structure; read it at once, the next step changes it), instead of
                keeping them: ``outputs`` is then empty and a per-T measurement holds
                what it scores, not ``[T, B, ...]``.
        """
        overhead = self.overhead
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if timesteps <= overhead:
            raise ValueError(
                f"timesteps must be > {overhead}: this SNN spends its first {overhead} steps "
                f"on every input before its output counts, got {timesteps}"
            )
        self._check_input(x)
        if self.input_map is not None:  # e.g. an integer SNN's pixels: before any release
            x = self.input_map(x)
        batch = x.shape[0]
        settles = self.release.steps is not None
        dropping = drop_settled and settles and batch > 1 and self.rows_separable(x)
        check_every = check_every or (1 if x.device.type == "cpu" else 8)
        keep = timesteps if keep is None else min(keep, timesteps)
        self.reset()
        self.running = batch
        released = self._released()
        neurons = self.neurons
        divisor = self.release.divisor
        share, zero = x / divisor, torch.zeros_like(x)
        integer = self.release if self.release.integer else None  # shares change per step
        if overhead:
            self.prepare(share, on_step)
        for m in released:
            m.begin(divisor, integer)
        t_eq = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        live = t_eq  # T_eq of the rows still simulated
        rows: Tensor | None = None  # their sample indices, once some have left (None: all)
        counts = {name: x.new_zeros(timesteps, batch) for name in neurons} if record_spikes else {}
        kept = _Rows(keep, on_output)  # the accumulated output after each step, per leaf
        totals: list[Tensor] = []  # the rows still simulated
        full: list[Tensor] = []  # every sample's (the same tensors while none has left)
        spec = None  # the structure of the network's output (one tensor, a tuple, ...)
        settled = False  # every sample at equilibrium
        steps = overhead
        for t in range(overhead + 1, timesteps + 1):
            if settled and fast_forward:
                break
            steps = t
            releasing = self.release.releasing(t - overhead)
            for m in released:
                m.releasing = releasing
            if integer is not None and releasing:
                share = integer.portion(x, t - overhead)
                for m in released:
                    m.at(t - overhead)
            leaves, spec = tree_flatten(self.graph(share if releasing else zero))
            if not totals:
                totals = [y.clone() for y in leaves]
                full = totals
                kept.spec = spec
            else:
                for total, y in zip(totals, leaves, strict=True):
                    total.add_(y)
            if rows is not None:
                for whole, total in zip(full, totals, strict=True):
                    whole.index_copy_(0, rows, total)
            kept.add(t, full)
            if record_spikes or not (releasing or settled):
                quiet = self._quiet(neurons, counts, t, rows, len(live), x.device)
            if not (releasing or settled):
                # A step after T_off with no spike in a sample: nothing can change for
                # it again (inputs are zero from now on), so its output is final.
                live = torch.where(quiet & (live < 0), t - 1, live)
                if (t - overhead) % check_every == 0 or t == timesteps:
                    done = live >= 0
                    left = int(done.sum())  # the one synchronisation with the host
                    settled = left == len(live)
                    if dropping and not settled and left >= max(1, len(live) // DROP_FRACTION):
                        stay = (~done).nonzero().squeeze(1)
                        rows = torch.arange(batch, device=x.device) if rows is None else rows
                        t_eq.index_copy_(0, rows, live)
                        if full is totals:
                            full = [total.clone() for total in totals]
                        rows, live = rows[stay], live[stay]
                        totals = [total.index_select(0, stay) for total in totals]
                        share, zero = share.index_select(0, stay), zero.index_select(0, stay)
                        x = x.index_select(0, stay)
                        for m in self._stateful():
                            select_rows(m, stay, len(done))
                        self.running = len(stay)
            if on_step is not None:
                on_step(t, self)
            if settled and stop_at_equilibrium:
                break
        if rows is None:
            t_eq = live
        else:
            t_eq.index_copy_(0, rows, live)
        if settled and fast_forward and not stop_at_equilibrium:
            # Inputs are zero and no neuron fires: state and output stay as they are.
            self.resting = True
            try:
                for t in range(steps + 1, timesteps + 1):
                    if on_step is not None:
                        on_step(t, self)
            finally:
                self.resting = False
            kept.hold(steps, timesteps, full)
            steps = timesteps
        outputs = kept.result(min(steps, keep), full)
        spikes = {k: v[:steps] for k, v in counts.items()} if record_spikes else None
        return Simulation(
            tree_unflatten(outputs, spec), t_eq, tree_unflatten(full, spec), steps, spikes
        )

    @staticmethod
    def _quiet(neurons, counts, t: int, rows: Tensor | None, batch: int, device) -> Tensor:
        """Per row still simulated, whether no neuron fired in step ``t``; writes each
        layer's spike count of the step into ``counts`` if asked."""
        active = None
        for name, neuron in neurons.items():
            spikes = neuron.spike.reshape(batch, -1)
            if counts:
                n = torch.linalg.vector_norm(spikes, 1, dim=1)  # |+1| and |-1| both count
                if rows is None:
                    counts[name][t - 1] = n
                else:
                    counts[name][t - 1].index_copy_(0, rows, n)
                fired = n > 0
            else:  # spikes are in {-1, 0, 1}; two fast reductions beat any()
                fired = (spikes.amax(1) > 0) | (spikes.amin(1) < 0)
            active = fired if active is None else active | fired
        if active is None:
            return torch.ones(batch, dtype=torch.bool, device=device)
        return ~active

    def simulate(self, x: Tensor, timesteps: int) -> Tensor:
        """``[T, B, ...]`` accumulated output after each of ``timesteps`` steps (one pass)."""
        return self.run(x, timesteps).outputs

    def run_to_equilibrium(self, x: Tensor, max_timesteps: int) -> tuple[Tensor, Tensor]:
        """Simulate until every sample is at equilibrium, at most ``max_timesteps`` steps.

        Returns ``(out [B, ...], t_eq [B])``; ``t_eq`` is ``-1`` (with a warning) for
        samples that did not reach equilibrium in time.
        """
        sim = self.run(x, max_timesteps, stop_at_equilibrium=True)
        if not bool(sim.at_equilibrium.all()):
            missing = int((~sim.at_equilibrium).sum())
            warnings.warn(
                f"{missing} of {len(sim.t_eq)} samples did not reach equilibrium within "
                f"{max_timesteps} steps; raise max_timesteps",
                stacklevel=2,
            )
        return sim.final, sim.t_eq

    def forward(self, x: Tensor, timesteps: int) -> Tensor:
        """Same as :meth:`simulate`."""
        return self.simulate(x, timesteps)
