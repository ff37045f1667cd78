"""The converted SNN and its simulator: accumulated outputs per time-step, equilibrium."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from spikezip.snn.encoding import Encoding, Release
from spikezip.snn.layers import Released
from spikezip.snn.neuron import SpikingNeuron
from spikezip.snn.operators import Accumulating

# The one default budget of steps to reach equilibrium (conversion proof and evaluation).
MAX_TIMESTEPS = 1000


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

    def __init__(self, graph: fx.GraphModule, release: Release, encoding: Encoding | str):
        super().__init__()
        self.graph = graph
        self.release = release
        self.encoding = Encoding(encoding)

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
        self.reset()
        released = self._released()
        neurons = self.neurons
        divisor = self.release.divisor
        share, zero = x / divisor, torch.zeros_like(x)
        if overhead:
            self.prepare(share, on_step)
        for m in released:
            m.begin(divisor)
        batch = x.shape[0]
        t_eq = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        counts: dict[str, list[Tensor]] = {name: [] for name in neurons} if record_spikes else {}
        outputs: list[list[Tensor]] = []  # per step kept, the accumulated output's leaves
        totals: list[Tensor] | None = None
        spec = None  # the structure of the network's output (one tensor, a tuple, ...)
        settled = False  # every sample at equilibrium
        keep = timesteps if keep is None else keep
        steps = 0
        for t in range(overhead + 1, timesteps + 1):
            steps = t
            if settled and fast_forward:
                # Inputs are zero and no neuron fires: state and output stay as they are.
                if t <= keep:
                    outputs.append(totals)
                for c in counts.values():
                    c.append(torch.zeros_like(c[-1]))
            else:
                releasing = self.release.releasing(t - overhead)
                for m in released:
                    m.releasing = releasing
                leaves, spec = tree_flatten(self.graph(share if releasing else zero))
                if totals is None:
                    totals = [y.clone() for y in leaves]
                else:
                    totals = [total + y for total, y in zip(totals, leaves, strict=True)]
                if t <= keep:
                    outputs.append(totals)
                if record_spikes or not (releasing or settled):
                    quiet = self._record_step(neurons, counts, batch, x.device)
                if not (releasing or settled):
                    # A step after T_off with no spike in a sample: nothing can change for
                    # it again (inputs are zero from now on), so its output is final.
                    t_eq = torch.where(quiet & (t_eq < 0), t - 1, t_eq)
                    settled = bool((t_eq >= 0).all())
            if on_step is not None:
                on_step(t, self)
            if settled and stop_at_equilibrium:
                break
        if overhead:  # nothing is counted during the method's own steps
            waited = min(overhead, keep)
            outputs[:0] = [[torch.zeros_like(total) for total in totals]] * waited
            for c in counts.values():
                c[:0] = [torch.zeros_like(c[0])] * overhead
        spikes = {k: torch.stack(v) for k, v in counts.items()} if record_spikes else None
        if outputs:
            kept = [torch.stack(rows) for rows in zip(*outputs, strict=True)]
        else:
            kept = [total.new_empty((0, *total.shape)) for total in totals]
        return Simulation(
            tree_unflatten(kept, spec), t_eq, tree_unflatten(totals, spec), steps, spikes
        )

    @staticmethod
    def _record_step(neurons, counts, batch, device) -> Tensor:
        """Per sample, whether no neuron fired this step; appends spike counts if asked."""
        active = torch.zeros(batch, dtype=torch.bool, device=device)
        for name, neuron in neurons.items():
            spikes = neuron.spike.reshape(batch, -1)
            if counts:
                n = spikes.abs().sum(1)  # +1 and -1 both count
                counts[name].append(n)
                active |= n > 0
            else:  # spikes are in {-1, 0, 1}; two fast reductions beat any()
                active |= (spikes.amax(1) > 0) | (spikes.amin(1) < 0)
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
