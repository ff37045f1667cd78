"""The two operator kinds beyond plain ST-BIF neurons and linear layers.

- :class:`GradedNeuron`: an elementwise non-linearity ``f`` (GELU, SiLU, hardswish,
  sigmoid, tanh, ...) applied to a quantizer's output stays spike-driven. The neuron is
  the quantizer's ST-BIF neuron; its tracer moves one level per spike, and the spike
  carries ``f(s * S_new) - f(s * S_old)`` (a *graded* spike), so its accumulated output
  is ``f`` of the QANN's level once the tracer has settled.
- :class:`Accumulating`: an operator over several values that cannot be spike-driven
  (LayerNorm, softmax, the product of two spiking tensors, a gate ``x * sigmoid(s)``,
  max-pooling). It keeps the accumulated input ``A_t`` of each operand and emits
  ``g(A_t) - g(A_{t-1})``, so its accumulated output is ``g`` of the accumulated input:
  the QANN's value at equilibrium. It computes densely, at every step where an input
  changed.

In both, the first step emits the whole ``f(s * S_1)`` / ``g(A_1)`` (the previous output
counts as 0), so a non-zero ``f(0)`` or ``g(0)`` (a sigmoid's 0.5, a LayerNorm's shift) is
part of the accumulated output, as it is of the QANN's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from spikezip.snn.neuron import STBIF


class Elementwise(nn.Module):
    """``fn(x, *args, **kwargs)`` as a module: a functional activation with its constant
    arguments (``F.gelu(x, approximate="tanh")``, ``F.leaky_relu(x, 0.1)``); ``fn`` may
    be the name of a tensor method (``x.sigmoid()``)."""

    def __init__(self, fn: Callable | str, args: Sequence = (), kwargs: dict | None = None):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, tuple(args), dict(kwargs or {})

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.fn, str):
            return getattr(x, self.fn)(*self.args, **self.kwargs)
        return self.fn(x, *self.args, **self.kwargs)

    def extra_repr(self) -> str:
        return self.fn if isinstance(self.fn, str) else getattr(self.fn, "__name__", str(self.fn))


class GradedNeuron(STBIF):
    """ST-BIF neurons (threshold ``s``, tracer in ``[S_min, S_max]``) followed by an
    elementwise ``f``: output ``f(s * S_t) - f(s * S_{t-1})`` per step (``f(s * S_1)`` on
    the first). :meth:`accumulated` is the quantizer's level ``s * S`` (what the QANN's
    quantizer outputs); :meth:`accumulated_output` is ``f`` of it (what the QANN's
    activation outputs). ``f`` is a module (``nn.GELU()``, an :class:`Elementwise`)."""

    graded = True  # a spike costs a multiply at each synapse it reaches (the energy meter)
    batch_state = (*STBIF.batch_state, "_emitted")

    def __init__(self, threshold: Tensor | float, levels: int, fn: nn.Module, tracer_min: int = 0):
        super().__init__(threshold, levels, tracer_min)
        self.fn = fn

    def reset(self) -> None:
        super().reset()
        self._emitted: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.step(x)
        value = self.fn(self.count * self.threshold)
        out = value if self._emitted is None else value - self._emitted
        self._emitted = value
        return out

    def accumulated_output(self) -> Tensor:
        """``f(s * S)``: the total this layer has passed on so far."""
        if self._emitted is None:
            raise RuntimeError("GradedNeuron has no state: simulate an input first")
        return self._emitted

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tracer_min={self.tracer_min}, f={self.fn}"


class Accumulating(nn.Module):
    """An operator ``g`` run on accumulated inputs: each call is one step, with the
    step's changes of the operands (the positions :attr:`streams` marks in the flattened
    ``(args, kwargs)``; the other leaves are constants, passed as they are) and returns
    ``g(A_t) - g(A_{t-1})``. A step whose operands did not change returns zeros without
    computing ``g`` (:attr:`evaluations` counts the steps that did compute).

    ``op``: a module (``nn.LayerNorm``), a function (``torch.matmul``) or the name of a
    tensor method (``"softmax"``); ``what``: how the report names it.
    """

    spikezip_leaf = True  # one node in a torch.fx graph
    # Per-sample state (batch first), for the simulator's neuron.select_rows.
    batch_state = ("_totals", "_emitted", "changed_rows", "last")

    def __init__(self, op: nn.Module | Callable | str, streams: Sequence[bool], what: str):
        super().__init__()
        if isinstance(op, nn.Module):
            self.module = op  # registered: its parameters follow .to() / .double()
            self._op: Callable | str | None = None
        else:
            self.module = None
            self._op = op
        self.streams = tuple(bool(s) for s in streams)
        self.what = what
        self.reset()

    def reset(self) -> None:
        """Forget the accumulated inputs and the last output (before every input)."""
        self._totals: list[Tensor] | None = None
        self._emitted: Tensor | None = None
        self.changed = False  # whether the last step computed g
        self.changed_rows: Tensor | None = None  # per sample, when the operands' dim 0 is it
        self.last: Tensor | None = None  # the last step's output
        self.evaluations = 0

    def _g(self, args, kwargs) -> Tensor:
        if self.module is not None:
            return self.module(*args, **kwargs)
        if isinstance(self._op, str):
            return getattr(args[0], self._op)(*args[1:], **kwargs)
        return self._op(*args, **kwargs)

    def apply(self, *args, **kwargs) -> Tensor:
        """``g`` of the given operands, statelessly (for the energy meter's counting)."""
        return self._g(args, kwargs)

    def _changes(self, deltas: list[Tensor]) -> None:
        """Set :attr:`changed` (and :attr:`changed_rows` where dim 0 is the batch's)."""
        rows = {d.shape[0] if d.dim() else None for d in deltas}
        if len(rows) == 1 and None not in rows:
            flags = [d.reshape(d.shape[0], -1).ne(0).any(1) for d in deltas]
            self.changed_rows = torch.stack(flags).any(0)
            self.changed = bool(self.changed_rows.any())
        else:
            self.changed_rows = None
            self.changed = any(bool(d.any()) for d in deltas)

    def forward(self, *args, **kwargs) -> Tensor:
        leaves, spec = tree_flatten((args, kwargs))
        if len(leaves) != len(self.streams):
            raise RuntimeError(f"{self.what}: called with a different argument structure")
        deltas = [leaf for leaf, s in zip(leaves, self.streams, strict=True) if s]
        if self._totals is None:
            self._totals = [d.clone() for d in deltas]
            self._changes(deltas)
            self.changed = True  # g(A_1) is emitted even if A_1 = 0: g(0) may not be 0
            if self.changed_rows is not None:
                self.changed_rows = torch.ones_like(self.changed_rows)
        else:
            self._changes(deltas)
            if self.changed:
                for total, d in zip(self._totals, deltas, strict=True):
                    total.add_(d)
        if not self.changed:
            self.last = torch.zeros_like(self._emitted)
            return self.last
        totals = iter(self._totals)
        filled = [next(totals) if s else leaf for leaf, s in zip(leaves, self.streams, strict=True)]
        value = self._g(*tree_unflatten(filled, spec))
        if not isinstance(value, Tensor):
            raise TypeError(f"{self.what} returned {type(value).__name__}, not one tensor")
        storages = {t.untyped_storage().data_ptr() for t in self._totals}
        if value.untyped_storage().data_ptr() in storages:  # g returned a view of its input
            value = value.clone()
        out = value if self._emitted is None else value - self._emitted
        self._emitted = value
        self.evaluations += 1
        self.last = out
        return out

    def extra_repr(self) -> str:
        return self.what
