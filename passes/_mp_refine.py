"""Refinement step of mp-calibrate (a helper module: it registers no pass of its own).

Per-layer calibration fits each MP layer to its own float output; the network's end result is what
matters. Refinement, in the spirit of block-wise output reconstruction in post-training quantization
(Nagel et al., "Up or Down? Adaptive Rounding", AdaRound; Li et al., BRECQ), revisits the layers in
graph order and moves γ one step on its γD/2 = 2^k grid or c one power of two (then refits the
per-channel gain and offset on the layer's current MP input), keeping a move only when it lowers
the objective measured with the MP activations fed forward:

- `e2e`: the mean KL divergence of the MP network's output distribution from the float network's on
  the first output (softmax over its last axis; a relative squared error when it has one column);
- `blocks`: the sum over blocks of the relative squared error of each block's output, a block
  running from one MP op to the input of the next (a conv + pool stage, a residual block) and the
  last one to the first graph output.

Only improving moves are kept, so the objective never rises. Both use a seeded subset of at most
REFINE_SAMPLES calibration samples; each candidate reruns the network from the layer onward.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpc.ir import Graph, Op, apply

REFINE_SAMPLES = 256    # calibration samples the objective is measured on
MAX_MOVES = 4           # accepted moves per layer


def run_from(graph: Graph, env: dict, start: int, layer: Callable, weights: dict) -> dict:
    """Values of graph.ops[start:] computed on top of `env` (id -> array); MP ops through `layer`."""
    env = dict(env)
    for op in graph.ops[start:]:
        args = [weights[v.name] if v.is_weight else env[id(v)] for v in op.operands]
        outs = layer(op, args) if op.kind.startswith("mp.") else apply(op, args)
        env.update((id(r), a) for r, a in zip(op.results, outs))
    return env


def _softmax_log(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def rel_sq(got: np.ndarray, ref: np.ndarray) -> float:
    """Squared error relative to the reference's energy."""
    return float(((got - ref) ** 2).sum() / max(float((ref ** 2).sum()), 1e-300))


def kl_or_sq(got: np.ndarray, ref: np.ndarray) -> float:
    """Mean KL(softmax(ref) || softmax(got)) over rows; rel_sq for a single column."""
    if ref.ndim < 2 or ref.shape[-1] < 2:
        return rel_sq(got, ref)
    lp, lq = _softmax_log(ref.reshape(-1, ref.shape[-1])), _softmax_log(got.reshape(-1, ref.shape[-1]))
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


def block_ends(graph: Graph, mp_ops: list[Op]) -> list:
    """The value ending each MP op's block: the next MP op's input, the first output for the last."""
    return [nxt.operands[0] for nxt in mp_ops[1:]] + [graph.outputs[0]]


def objective(mode: str, env: dict, ref: dict, ends: list) -> float:
    """The refinement objective of the MP activations `env` against the float ones `ref`."""
    if mode == "e2e":
        return kl_or_sq(env[id(ends[-1])], ref[id(ends[-1])])
    return sum(rel_sq(env[id(v)], ref[id(v)]) for v in ends)


def moves(kg: int, kc: int, fixed_gamma: bool) -> list[tuple[int, int]]:
    """Neighbouring grid points (γ exponent, c exponent): the point itself (an affine refit) first."""
    near = [(kg, kc), (kg, kc - 1), (kg, kc + 1)]
    return near if fixed_gamma else near + [(kg - 1, kc), (kg + 1, kc)]


def refine_layer(graph: Graph, i: int, op: Op, state: dict, refit: Callable, fixed_gamma: bool) -> int:
    """Greedy moves for the MP op at graph index i; returns how many were kept (state updated)."""
    kept = 0
    for _ in range(MAX_MOVES):
        fit = state["fits"][id(op)]
        best = None
        for kg, kc in moves(*state["grid"](op, fit), fixed_gamma):
            cand = refit(op, state["env"][id(op.operands[0])], kg, kc)
            env = run_from(graph, state["env"], i, state["layer"]({id(op): cand}), state["weights"])
            score = objective(state["mode"], env, state["ref"], state["ends"])
            if score < state["score"] and (best is None or score < best[0]):
                best = (score, cand, env)
        if best is None:
            break
        state["score"], state["fits"][id(op)], state["env"] = best
        kept += 1
    return kept
