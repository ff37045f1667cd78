"""Benchmark: is the per-sample activity check worth fusing into the compiled neuron step?

Times, on one ST-BIF layer of ``[64, 64, 32, 32]`` float32 neurons: the compiled in-place
step the simulator runs (:func:`spikezip.snn.neuron.compiled`), the same step compiled
with the per-row "any spike" reduction fused in, and the two eager reductions
(``amax``/``amin`` over each row's spikes) the simulator runs instead on the steps after
``T_off``. Run: ``.venv/bin/python bench/fused_activity.py``. Writes
``bench/results/fused_activity.json``.
"""

from __future__ import annotations

import statistics

import torch
from timing import RESULTS, wall, write_results

from spikezip.snn.neuron import NeuronState, compiled, stbif_transition

SHAPE = (64, 64, 32, 32)


def with_activity(state: NeuronState, out, x, threshold, low: int, high: int):
    result, following = stbif_transition(state, x, threshold, low, high)
    for old, new in zip(state, following, strict=True):
        old.copy_(new)
    out.copy_(result)
    return following.spike.reshape(following.spike.shape[0], -1).ne(0).any(1)


def main() -> None:
    torch.manual_seed(0)
    x, v = torch.randn(SHAPE), torch.randn(SHAPE)
    state = NeuronState(v, torch.randint(0, 9, SHAPE).float(), torch.zeros(SHAPE))
    out, threshold = torch.empty(SHAPE), torch.tensor(0.3)
    step = compiled(stbif_transition)
    fused = torch.compile(with_activity, dynamic=True, fullgraph=True)

    def separate():
        step(state, out, x, threshold, 0, 8)
        rows = state.spike.reshape(SHAPE[0], -1)
        (rows.amax(1) > 0) | (rows.amin(1) < 0)

    def together():
        fused(state, out, x, threshold, 0, 8)

    separate(), together()  # compile
    times = {"step_then_eager_reductions": [], "step_with_fused_reduction": []}
    for _ in range(30):  # interleaved
        times["step_then_eager_reductions"].append(wall(separate))
        times["step_with_fused_reduction"].append(wall(together))
    result = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    for name, ms in result.items():
        print(f"{name:<30}{ms:8.2f} ms")
    write_results({"torch": torch.__version__, "shape": SHAPE, "median_ms": result},
                  RESULTS / "fused_activity.json")  # fmt: skip


if __name__ == "__main__":
    main()
