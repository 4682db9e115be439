"""Operation counts of the fixed-point emulator: what the fx kernels actually perform, by kind, per sample.

A `Tally` (mpc.fx.tally) is handed to one op's kernel through the kernel context (`k.tally`, None
on the normal path); the kernel adds the operations it performs. `count_ops` runs a graph on a dataset with one
tally per op and returns per-sample counts, so a report can give the mean and the maximum per
inference. Kinds: `add` (adds, subtracts, negations), `compare` (compares, max, abs tests,
saturation tests), `shift`, `multiply`, `divide`.

Conventions (they describe the arithmetic on data that the C backend executes, not loop control):
- an accumulator starts at 0 and every term is one add: a dot product of length K is K multiplies
  and K adds;
- a shift by 0 is no operation; a rounding right shift is a shift, plus an add for `nearest`;
- saturation tests `v > hi` and, only when that is false, `v < lo` (1 or 2 compares per value);
  wrapping tests the low bits once and adds once where the value wraps;
- max pooling over v in-bounds taps is v - 1 compares; a window sum is v adds;
- integer MP (see `mpc.fx.arith.mp_alpha`): per term |x ± w| is 2 adds and 2 sign tests plus a
  negation where negative; per threshold, max over D values (D - 1 compares), lo = max - γ (1 add),
  then per bisection step mid (2 adds, 1 shift), -mid (1 add), and for each element visited before
  the running sum reaches γ (the C stops there: the sum only grows) two subtracts, two `> 0` tests
  and an add per positive part, the `f < γ` tests the loop makes, and the final `f >= γ`; the gain
  is one add (α - β), then per shift-add term its sign tests (1 or 2) and, for a non-zero sign,
  one shift (when the shift is non-zero) and one add.
Multiplies and divides therefore only come from fx.matmul and fx.conv2d.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mpc.fx.tally import KINDS, Tally

__all__ = ["KINDS", "Tally", "count_ops", "summary"]


def count_ops(graph, data, batch: int = 256) -> dict[str, dict[str, np.ndarray]]:
    """Per op (first result name) and kind, the operations each sample of `data` cost in the emulator."""
    from mpc.data import batches
    from mpc.ir import run
    parts: dict[str, dict[str, list[np.ndarray]]] = {}
    for feeds, _ in batches(data, batch):
        n = int(next(iter(feeds.values())).shape[0])
        tallies = {op.results[0].name: Tally(n) for op in graph.ops if op.kind.startswith("fx.")}
        run(graph, feeds, tallies=tallies)
        for name, t in tallies.items():
            for k in KINDS:
                parts.setdefault(name, {}).setdefault(k, []).append(t.per_sample[k])
    return {name: {k: np.concatenate(v) for k, v in by.items()} for name, by in parts.items()}


def summary(graph, counts: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Mean and max operations per inference by kind, per-layer means, and the MP layers' multiplies."""
    if not counts:
        return {}
    first = next(iter(counts.values()))
    total = {k: sum(by[k] for by in counts.values()) for k in KINDS}
    kinds = {op.results[0].name: op.kind for op in graph.ops}
    rows = [{"op": kinds[name], "result": name, **{k: _mean(by[k]) for k in KINDS}}
            for name, by in counts.items() if any(by[k].any() for k in KINDS)]
    mp = [by for name, by in counts.items() if kinds[name] in ("fx.mp_dot", "fx.mp_conv2d")]
    return {"ops_per_inference": {k: _mean(total[k]) for k in KINDS},
            "ops_per_inference_max": {k: int(total[k].max(initial=0)) for k in KINDS},
            "ops_by_layer": rows, "ops_samples": int(first["add"].size),
            "mp_layer_multiplies_and_divides": int(sum(int(by["multiply"].sum() + by["divide"].sum()) for by in mp))}


def _mean(a: np.ndarray) -> float:
    return round(float(a.mean()), 2) if a.size else 0.0
