"""`lower-ltc`: replace forward RNN/GRU layers (nn.rnn, nn.gru) by layers of LTC spiking neurons (snn.ltc).

The LTC neuron (liquid time constant, adaptive threshold; B. Yin, F. Corradi, S. M. Bohté, Nature Machine
Intelligence 2023) is defined in mpc/ir/ops_rnn.py. Initialisation from the source layer:
- synaptic current: the input weights W_in, recurrent weights W_rec and bias b are the source's
  candidate path: the RNN's W, R and W_b + R_b; the GRU's candidate-gate rows (h) of W, R and of both
  biases. The recurrent input of the LTC layer is its own spikes, where the source fed back h_{t−1};
- membrane rate 1/τ_m = σ(b_τ) with W_τ = 0: for a GRU, b_τ = −(W_bz + R_bz), so the rate equals the
  GRU's 1 − z (the share of the candidate it takes in) at zero gate input; for an RNN, which replaces its
  state at every step, b_τ = 4 (rate 0.98);
- adaptation: W_ρ = 0, b_ρ = 0 (ρ = 0.5).
The gate weights start at zero so that fine-tuning (FPTT or BPTT) learns their input dependence.
Only the layer changes: ops after it (a per-time-step feedforward stack) are kept, now fed spikes.
Y becomes the spikes with the direction axis, [T, 1, N, H]; Y_h the last step's spikes [1, N, H].
Supported: one direction (forward), layout 0, no initial state or a constant zero one; other layers are left unchanged
(and counted as skipped).
"""
from __future__ import annotations

import numpy as np

from mpc.ir import Graph, Op, erase, insert_before, make_op, replace_all_uses
from mpc.ir.ops_nn import AxesAttrs
from mpc.ir.ops_nn_tensor import SliceAttrs
from mpc.ir.ops_rnn import Direction, LTCAttrs
from mpc.passmanager import register_pass


def _lowerable(graph: Graph, op: Op) -> bool:
    """Forward, layout 0, weights known, and no initial state or an all-zero constant one."""
    a = op.attrs
    known = all(v.is_weight for v in op.operands[1:])
    zero_h0 = len(op.operands) == 4 or (known and not np.any(graph.weights[op.operands[4].name]))
    return a.direction is Direction.FORWARD and a.layout == 0 and known and zero_h0


def ltc_weights(kind: str, w: np.ndarray, r: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """The seven snn.ltc weights initialised from a one-direction RNN/GRU's W [1, G·H, I], R, B (see above)."""
    h = r.shape[2]
    rows = slice(2 * h, 3 * h) if kind == "nn.gru" else slice(0, h)
    g = r.shape[1] // h
    wb, rb = b[0, :g * h], b[0, g * h:]
    tau = -(wb[:h] + rb[:h]) if kind == "nn.gru" else np.full(h, 4.0)
    dt = w.dtype
    return {"w_in": w[0, rows], "w_rec": r[0, rows], "b": wb[rows] + rb[rows],
            "w_tau": np.zeros((h, 2 * h), dt), "b_tau": tau.astype(dt), "w_rho": np.zeros((h, 2 * h), dt),
            "b_rho": np.zeros(h, dt)}


def _lower(graph: Graph, op: Op) -> None:
    arrays = [graph.weights[v.name] for v in op.operands[1:4]]
    ws = ltc_weights(op.kind, *arrays)
    base = op.results[0].name
    operands = [op.operands[0]] + [graph.add_weight(f"{base}.ltc.{k}", v.astype(arrays[0].dtype))
                                   for k, v in ws.items()]
    ltc = make_op(graph, "snn.ltc", operands, LTCAttrs(), op.loc)
    y = make_op(graph, "nn.unsqueeze", [ltc.result], AxesAttrs((1,)), op.loc)
    yh = make_op(graph, "nn.slice", [ltc.result], SliceAttrs((-1,), (2**63 - 1,), (0,), (1,)), op.loc)
    insert_before(graph, op, [ltc, y, yh])
    replace_all_uses(graph, op.results[0], y.result)
    replace_all_uses(graph, op.results[1], yh.result)
    erase(graph, op)


@register_pass("lower-ltc", summary="replace forward RNN/GRU layers by LTC spiking neuron layers (snn.ltc)")
def lower_ltc(graph: Graph, ctx) -> dict:
    """Lower every supported nn.rnn / nn.gru; returns {'lowered', 'skipped'}."""
    stats = {"lowered": 0, "skipped": 0}
    for op in [o for o in graph.ops if o.kind in ("nn.rnn", "nn.gru")]:
        if not _lowerable(graph, op):
            stats["skipped"] += 1
            continue
        _lower(graph, op)
        stats["lowered"] += 1
    return stats
