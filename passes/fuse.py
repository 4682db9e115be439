"""fuse: fold weight masks into the weights, remove dead neurons, and report the parameters and
multiply-accumulates (MACs) of every synapse layer before and after.

1. Every `sp.mask(@w, @m)` whose operands are weights becomes one new weight `@w.pruned` (w where m,
   else 0): the mask is gone and the zeros are real.
2. A dead neuron is an output of a synapse op (nn.matmul, nn.gemm without transposes, nn.conv2d;
   mp.dot / mp.conv2d with a zero offset, whose y_MP is exactly 0 for an all-zero weight row since
   its two threshold sets then coincide) whose incoming weights are all zero. Its channel is followed
   through a chain of single-use ops that act channel by channel (ReLU, leaky ReLU, tanh, clip,
   identity, dropout, BatchNorm, bias additions and scalings by weights, max/average/global pooling,
   and any stateful single-operand op that keeps its operand's type, such as a spiking neuron) and
   through nn.flatten, to the next dense synapse (nn.matmul, nn.gemm, nn.conv2d). If the chain maps an
   all-zero channel to exactly zero (checked by running the chain's own kernels on zeros, so a bias
   or a BatchNorm shift that turns the neuron into a constant keeps it), the neuron's row goes from
   the producer, its entry from every per-channel weight on the chain, and the matching input
   columns from the consumer. MP consumers keep their inputs: an input that is always zero still
   enters the margin-propagation thresholds, so removing it would change the outputs.
3. The report gets a "Sparsity" table: per synapse layer, weights and MACs per sample, dense before
   the pass and non-zero after (what a sparse backend executes), and the shape after.

Removing a neuron is exact: outputs are unchanged up to the rounding of dropping additions of zero.
Implements the fusion step of LBI pruning (see passes/lbi_prune.py).
"""
from __future__ import annotations

import numpy as np

from mpc.ir import Graph, Op, Value, apply, erase, replace_all_uses
from mpc.passmanager import register_pass

PRODUCERS = ("nn.matmul", "nn.gemm", "nn.conv2d", "mp.dot", "mp.conv2d")
CONSUMERS = ("nn.matmul", "nn.gemm", "nn.conv2d")
CHANNELWISE = ("nn.relu", "nn.leaky_relu", "nn.tanh", "nn.clip", "nn.identity", "nn.dropout", "nn.batchnorm",
               "nn.add", "nn.sub", "nn.mul", "nn.maxpool2d", "nn.avgpool2d", "nn.global_avgpool")
CONVS = ("nn.conv2d", "mp.conv2d")


def _is_synapse(op: Op) -> bool:
    if op.kind not in PRODUCERS or not op.operands[1].is_weight:
        return False
    if op.kind == "nn.gemm" and (op.attrs.trans_a or op.attrs.trans_b):
        return False
    return not (op.kind in CONVS and op.attrs.group != 1)


def out_axis(op: Op) -> int:
    """Axis of the weight that indexes output neurons."""
    return 0 if op.kind in CONVS or op.kind == "mp.dot" else 1


def in_axis(op: Op) -> int:
    """Axis of the weight that indexes inputs."""
    return 1 if op.kind in CONVS or op.kind == "mp.dot" else 0


def fold_masks(graph: Graph) -> int:
    """Replace each sp.mask of two weights by the masked weight; returns how many."""
    n = 0
    for op in [o for o in graph.ops if o.kind == "sp.mask"]:
        w, m = op.operands
        if not (w.is_weight and m.is_weight):
            continue
        arr = graph.weights[w.name]
        new = graph.add_weight(f"{w.name}.pruned", np.where(graph.weights[m.name], arr, arr.dtype.type(0)))
        replace_all_uses(graph, op.result, new)
        erase(graph, op)
        n += 1
    return n


def dead_outputs(graph: Graph, op: Op) -> np.ndarray:
    """Bool per output neuron: all incoming weights zero (and a zero MP offset)."""
    w = graph.weights[op.operands[1].name]
    ax = out_axis(op)
    dead = ~np.any(np.moveaxis(w, ax, 0).reshape(w.shape[ax], -1) != 0, axis=1)
    if op.kind in ("mp.dot", "mp.conv2d") and len(op.operands) > 3:
        dead &= graph.weights[op.operands[3].name] == 0
    if op.kind in ("nn.gemm", "nn.conv2d") and len(op.operands) > 2:
        dead &= np.broadcast_to(graph.weights[op.operands[2].name], (w.shape[ax],)) == 0
    return dead


def _sole_user(graph: Graph, users: dict, v: Value) -> Op | None:
    if any(o is v for o in graph.outputs):
        return None
    us = users.get(id(v), [])
    return us[0] if len(us) == 1 else None


def _is_channelwise(op: Op) -> bool:
    if op.kind in CHANNELWISE:
        return True
    stateful = "stateful" in op.opdef.traits and len(op.operands) == 1
    return stateful and op.result.type == op.operands[0].type


def follow(graph: Graph, users: dict, op: Op) -> tuple[list[Op], Op, int] | None:
    """(channel-wise chain, consuming dense synapse, columns per channel) after `op`, or None."""
    chain, v, per = [], op.result, 1
    while True:
        u = _sole_user(graph, users, v)
        if u is None:
            return None
        if u.kind in CONSUMERS and _is_synapse(u) and u.operands[0] is v:
            return chain, u, per
        if u.kind == "nn.flatten" and v.type.rank == 4 and u.attrs.axis == 1 and per == 1:
            per = int(np.prod(v.type.shape[2:]))
        elif not (_is_channelwise(u) and u.operands[0] is v):
            return None
        chain.append(u)
        v = u.result


def _zeros(t) -> np.ndarray:
    return np.zeros([d if isinstance(d, int) else 1 for d in t.shape], t.dtype.numpy)


def _channels(y: np.ndarray, axis: int, n: int) -> np.ndarray:
    """y's entries grouped per channel: [n, rest]."""
    return np.moveaxis(y, axis, 0).reshape(n, -1)


def removable(graph: Graph, op: Op, chain: list[Op], dead: np.ndarray) -> np.ndarray:
    """The dead neurons that the chain maps to exactly zero when they are zero."""
    y = _zeros(op.result.type)
    axis = -3 if op.kind in CONVS else -1
    for c in chain:
        args = [graph.weights[v.name] if v.is_weight else y for v in c.operands]
        y = apply(c, args)[0]
        axis = -1 if c.kind == "nn.flatten" else axis
    return dead & ~np.any(_channels(y, axis, dead.size) != 0, axis=1)


def _slice_chain_weight(op: Op, w: np.ndarray, keep: np.ndarray, axis: int, rank: int) -> np.ndarray | None:
    """A per-channel weight of a chain op restricted to the kept channels (None: cannot tell how)."""
    if op.kind == "nn.batchnorm":
        return w[keep]
    wa = w.ndim + axis if rank >= w.ndim else w.ndim - rank + axis
    if wa < 0 or w.shape[wa] == 1:
        return w
    if w.shape[wa] != keep.size:
        return None
    return np.compress(keep, w, axis=wa)


def _plan_chain(graph: Graph, op: Op, chain: list[Op], keep: np.ndarray) -> dict | None:
    """{(op id, operand index): new array} for the chain's weights, or None when one cannot be sliced."""
    plan, axis, rank = {}, (-3 if op.kind in CONVS else -1), op.result.type.rank
    for c in chain:
        if c.kind == "nn.flatten":
            axis, rank = -1, 2
            continue
        for i, v in enumerate(c.operands[1:], 1):
            if not v.is_weight:
                return None
            new = _slice_chain_weight(c, graph.weights[v.name], keep, axis, rank)
            if new is None:
                return None
            plan[(id(c), i)] = new
    return plan


def _set(graph: Graph, op: Op, i: int, arr: np.ndarray) -> None:
    op.operands[i] = graph.add_weight(f"{op.operands[i].name}.live", arr)


def _retype(op: Op) -> None:
    for r, t in zip(op.results, op.opdef.infer([v.type for v in op.operands], op.attrs)):
        r.type = t


def remove_dead(graph: Graph, op: Op, users: dict) -> int:
    """Remove op's removable dead neurons (see the module docstring); returns how many."""
    found = follow(graph, users, op)
    dead = dead_outputs(graph, op)
    if found is None or not dead.any() or dead.all():
        return 0
    chain, consumer, per = found
    gone = removable(graph, op, chain, dead)
    keep = ~gone
    plan = _plan_chain(graph, op, chain, keep) if gone.any() else None
    if plan is None:
        return 0
    w = graph.weights[op.operands[1].name]
    _set(graph, op, 1, np.compress(keep, w, axis=out_axis(op)))
    for i in range(2, len(op.operands)):   # bias, or MP gain and offset: one entry per output
        _set(graph, op, i, np.compress(keep, graph.weights[op.operands[i].name].reshape(-1), axis=0)
             .reshape((-1,) + graph.weights[op.operands[i].name].shape[1:]))
    for c in chain:
        for (cid, i), arr in plan.items():
            if cid == id(c):
                _set(graph, c, i, arr)
    cw = graph.weights[consumer.operands[1].name]
    _set(graph, consumer, 1, np.compress(np.repeat(keep, per), cw, axis=in_axis(consumer)))
    for o in [op, *chain, consumer]:
        _retype(o)
    return int(gone.sum())


def _weight_name(op: Op) -> str:
    v = op.operands[1]
    return v.producer.operands[0].name if v.producer is not None and v.producer.kind == "sp.mask" else v.name


def layer_cost(graph: Graph, op: Op) -> tuple[int, int, int, int]:
    """(weights, non-zero weights, MACs, non-zero MACs) per sample of one synapse op."""
    v = op.operands[1]
    size = int(np.prod(v.type.shape))
    nnz = int(np.count_nonzero(graph.weights[v.name])) if v.is_weight else size
    if v.producer is not None and v.producer.kind == "sp.mask":
        nnz = v.producer.attrs.nnz
    reps = int(np.prod(op.result.type.shape[-2:])) if op.kind in CONVS else 1
    return size, nnz, size * reps, nnz * reps


@register_pass("fuse", summary="fold weight masks, remove dead neurons, report parameters and MACs per layer")
def fuse(graph: Graph, ctx) -> dict:
    """Fold masks and remove dead neurons in place; statistics: masks folded, neurons removed."""
    layers = [op for op in graph.ops if op.kind in PRODUCERS]
    before = {id(op): layer_cost(graph, op) for op in layers}
    names = {id(op): _weight_name(op) for op in layers}
    folded = fold_masks(graph)
    removed = 0
    for op in [o for o in graph.ops if _is_synapse(o)]:
        removed += remove_dead(graph, op, graph.users())
    table = []
    for op in layers:
        b, a = before[id(op)], layer_cost(graph, op)
        table.append({"layer": names[id(op)], "op": op.kind, "weights_before": b[0], "weights_after": a[1],
                      "macs_before": b[2], "macs_after": a[3], "shape_after": list(op.operands[1].type.shape)})
    ctx.report.section("Sparsity", table)
    totals = [sum(r[k] for r in table) for k in ("weights_before", "weights_after", "macs_before", "macs_after")]
    return {"masks_folded": folded, "neurons_removed": removed, "weights_before": totals[0],
            "weights_after": totals[1], "macs_before": totals[2], "macs_after": totals[3]}
