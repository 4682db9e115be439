"""lbi-prune: post-training masks on synapse weights, by layer-wise linearized Bregman iterations
(LBI) on calibration activations, or by weight magnitude (the baseline).

For every synapse op whose weight operand is a weight (nn.matmul, nn.gemm without transposes,
nn.conv2d and mp.dot / mp.conv2d with group 1), A = the layer's captured inputs (im2col patches for a
convolution; at most `rows` seeded rows) and F = A·W, its dense pre-bias outputs, so no labels are
needed. Classic LBI (Yin, Osher, Goldfarb, Darbon 2008; see mpc.sparse.lbi) follows its
regularization path from the empty support until the support holds the requested (1 − sparsity)
fraction of the weights (then the entries with the largest |v| are kept, so each layer meets the
sparsity exactly), or, when `lam` is given (sparsity is then ignored), runs `iters` iterations with
that λ and keeps its support. `group=rows` keeps
or drops an output neuron's incoming weights together (except in output layers, those whose results
reach a graph output without another synapse: their rows are the class logits, so they are pruned
weight by weight, every output keeping the same share of its weights), `group=kernels` a conv kernel; the threshold is λ√(group size). `method=magnitude` keeps the largest |w| (or group norms) per layer instead.

With `refit` (default), the kept weights of each layer are refit by least squares so that the
pruned layer, fed the outputs of the layers pruned before it, reproduces the dense layer's outputs
(LBI's path picks the support; the refit removes its shrinkage bias); the refit weights get a new
name (`@w.lbi`). `refit=false` only masks, as plain magnitude pruning (`torch.nn.utils.prune`) does.

The weight operand becomes `sp.mask(@w, @w.mask)`; the weights themselves are unchanged (`fuse` folds
the masks and removes dead neurons). The report gets a "Pruning" table: per layer, weights kept and
LBI iterations. Options: `lbi-prune{method=lbi,sparsity=0.5,group=none}` (CLI: --prune, --sparsity,
--lbi-lambda, --group).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

import numpy as np

from mpc import kernels_np as K
from mpc.calib import capture
from mpc.data import random_data
from mpc.errors import BadFlag
from mpc.ir import Graph, Op, apply, insert_before, make_op
from mpc.passmanager import register_pass
from mpc.sparse.lbi import Grouping, lbi_path, top_mask

SYNAPSES = ("nn.matmul", "nn.gemm", "nn.conv2d", "mp.dot", "mp.conv2d")
CONVS = ("nn.conv2d", "mp.conv2d")


class Method(enum.Enum):
    """How masks are chosen."""

    LBI = "lbi"
    MAGNITUDE = "magnitude"


class Group(enum.Enum):
    """Which weights are kept or dropped together."""

    NONE = "none"
    ROWS = "rows"
    KERNELS = "kernels"


@dataclass(frozen=True)
class LBIPruneOptions:
    """Options of lbi-prune: method, target sparsity or LBI λ, grouping, iterations, calibration rows, refit."""

    method: Method = Method.LBI
    sparsity: float = 0.5
    lam: float | None = None
    group: Group = Group.NONE
    iters: int = 3000
    rows: int = 4096
    refit: bool = True

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise BadFlag(f"lbi-prune: option sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam > 0):
            raise BadFlag(f"lbi-prune: option lam must be a finite number > 0, got {self.lam!r}")
        if self.method is Method.MAGNITUDE and self.lam is not None:
            raise BadFlag("lbi-prune: option lam needs method=lbi (magnitude pruning takes sparsity)")
        if self.iters < 1 or self.rows < 1:
            raise BadFlag(f"lbi-prune: iters and rows must be >= 1, got {self.iters} and {self.rows}")


def synapses(graph: Graph) -> list[Op]:
    """Synapse ops with a plain weight operand (not yet masked), in graph order."""
    out = []
    for op in graph.ops:
        if op.kind not in SYNAPSES or not op.operands[1].is_weight:
            continue
        if op.kind == "nn.gemm" and (op.attrs.trans_a or op.attrs.trans_b):
            continue
        if op.kind in CONVS and op.attrs.group != 1:
            continue
        out.append(op)
    return out


def as_matrix(op: Op, w: np.ndarray) -> tuple[np.ndarray, Grouping]:
    """The weight as U [inputs, outputs] and how its groups sit in U."""
    if op.kind in CONVS:
        return w.reshape(w.shape[0], -1).T, Grouping("kernels", int(np.prod(w.shape[2:])))
    if op.kind == "mp.dot":
        return w.T, Grouping()
    return w, Grouping()


def from_matrix(op: Op, u: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of as_matrix."""
    return u.T.reshape(shape) if op.kind in CONVS or op.kind == "mp.dot" else u.reshape(shape)


def layer_inputs(op: Op, x: np.ndarray, w: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """A [n, D]: the rows the layer multiplies by its weight (patches for a conv), subsampled."""
    if op.kind in CONVS:
        a = op.attrs
        x = K.im2col(x, w.shape[2:], a.strides, a.pads, a.dilations, 1)[0][0]
    a2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
    if a2.shape[0] > rows:
        idx = np.sort(np.random.default_rng(seed).choice(a2.shape[0], rows, replace=False))
        a2 = a2[idx]
    return a2


def _grouping(opts: LBIPruneOptions, native: Grouping) -> Grouping:
    if opts.group is Group.ROWS:
        return Grouping("rows")
    if opts.group is Group.KERNELS and native.kind == "kernels":
        return native
    return Grouping()


def choose_mask(opts: LBIPruneOptions, u: np.ndarray, a: np.ndarray | None, grouping: Grouping,
                f: np.ndarray | None = None, balanced: bool = False) -> tuple:
    """(mask of U, LBI iterations) for one layer; LBI fits F (default A·U) from A. `balanced`: every
    output keeps the same share of its weights (an output layer under group=rows)."""
    keep = None if opts.lam is not None else round((1.0 - opts.sparsity) * u.size)
    pick = balanced_mask if balanced else top_mask
    if opts.method is Method.MAGNITUDE:
        return pick(np.abs(u) if grouping.kind == "none" else _group_norm(u, grouping), keep, grouping), 0
    kw = {"lam": opts.lam} if opts.lam is not None else {}
    res = lbi_path(a, a @ u if f is None else f, iters=opts.iters, grouping=grouping, stop_nnz=keep, **kw)
    if keep is None:
        return res.u != 0, res.iterations
    return pick(res.priority, keep, grouping), res.iterations


def balanced_mask(priority: np.ndarray, keep: int, grouping: Grouping | None = None) -> np.ndarray:
    """A bool mask of U [D, H] keeping `keep` entries spread evenly over the H outputs (the first
    keep mod H outputs keep one more), each output its entries of highest priority (ties: index order)."""
    d, h = priority.shape
    mask = np.zeros((d, h), bool)
    for j in range(h):
        k = min(d, keep // h + (j < keep % h))
        mask[np.argsort(-priority[:, j], kind="stable")[:k], j] = True
    return mask


def _group_norm(u: np.ndarray, grouping: Grouping) -> np.ndarray:
    g = grouping.to_groups(u)
    return grouping.from_groups(np.repeat(np.linalg.norm(g, axis=1)[:, None], g.shape[1], axis=1), u.shape)


def refit(a: np.ndarray, f: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Least squares on the kept weights, one output at a time: min ‖A_S u_S − f‖ (a tiny ridge keeps
    it defined when the support is wider than the data)."""
    u = np.zeros(mask.shape)
    for h in range(mask.shape[1]):
        s = np.flatnonzero(mask[:, h])
        if s.size == 0:
            continue
        a_s = a[:, s]
        gram = a_s.T @ a_s
        ridge = 1e-6 * (np.trace(gram) / s.size + 1e-12)
        u[s, h] = np.linalg.solve(gram + ridge * np.eye(s.size), a_s.T @ f[:, h])
    return u


@dataclass
class LayerPlan:
    """What lbi-prune decided for one synapse op."""

    mask: np.ndarray
    weight: np.ndarray | None   # refit weights (None: the original ones stay)
    iterations: int


def plan_layer(op: Op, w: np.ndarray, x_in: np.ndarray | None, x_dense: np.ndarray | None,
               opts: LBIPruneOptions, seed: int, balanced: bool = False) -> LayerPlan:
    """Mask (and refit weights) of one layer: A from the pruned network, F = the dense layer's output."""
    u, native = as_matrix(op, w)
    grouping = _grouping(opts, native)
    if x_in is None:
        mask_u, iters = choose_mask(opts, u, None, grouping, balanced=balanced)
        return LayerPlan(from_matrix(op, mask_u, w.shape), None, iters)
    a = layer_inputs(op, x_in, w, opts.rows, seed)
    f = layer_inputs(op, x_dense, w, opts.rows, seed) @ u
    mask_u, iters = choose_mask(opts, u, a, grouping, f, balanced)
    new = refit(a, f, mask_u) if opts.refit else None
    new = None if new is None else from_matrix(op, new, w.shape)
    return LayerPlan(from_matrix(op, mask_u, w.shape), new, iters)


def _masked_output(op: Op, args: list[np.ndarray], plan: LayerPlan) -> tuple[np.ndarray, ...]:
    w = plan.weight if plan.weight is not None else args[1]
    return apply(op, [args[0], np.where(plan.mask, w, 0).astype(args[1].dtype), *args[2:]])


def plan_all(graph: Graph, ops: list[Op], ctx, opts: LBIPruneOptions) -> dict[int, LayerPlan]:
    """Plans in graph order; with LBI each layer sees the outputs of the layers pruned before it."""
    weight = {id(op): np.asarray(graph.weights[op.operands[1].name], np.float64) for op in ops}
    per_op = layer_options(graph, ops, opts)
    out = output_layers(graph, ops) if opts.group is Group.ROWS else set()   # balanced masks there
    if opts.method is Method.MAGNITUDE and not opts.refit:   # the plain baseline needs no data
        return {id(op): plan_layer(op, weight[id(op)], None, None, per_op[id(op)], ctx.seed, balanced=id(op) in out)
                for op in ops}
    data = ctx.dataset if ctx.dataset is not None else random_data(graph, 256, ctx.seed)
    dense = capture(graph, data, [op.operands[0] for op in ops], batch_size=None, dtype=np.float64,
                    quiet=ctx.quiet, progress=ctx.progress, desc="lbi-prune dense")
    plans: dict[int, LayerPlan] = {}

    def hook(op, args, outs):
        if id(op) not in weight:
            return None
        plans[id(op)] = plan_layer(op, weight[id(op)], args[0], dense[op.operands[0].name], per_op[id(op)],
                                   ctx.seed, id(op) in out)
        return _masked_output(op, args, plans[id(op)])

    capture(graph, data, [], batch_size=None, hook=hook, dtype=np.float64, quiet=ctx.quiet,
            progress=ctx.progress, desc="lbi-prune")
    return plans


def _reaches_output(op: Op, users: dict, outs: set[int]) -> bool:
    """Whether op's result reaches a graph output through ops that are not synapses."""
    stack, seen = list(op.results), set()
    while stack:
        v = stack.pop()
        if id(v) in outs:
            return True
        nxt = [u for u in users.get(id(v), []) if u.kind not in SYNAPSES and id(u) not in seen]
        seen.update(id(u) for u in nxt)
        stack += [r for u in nxt for r in u.results]
    return False


def output_layers(graph: Graph, ops: list[Op]) -> set[int]:
    """ids of the synapse ops whose outputs reach a graph output without passing another synapse."""
    users, outs = graph.users(), {id(v) for v in graph.outputs}
    return {id(op) for op in ops if _reaches_output(op, users, outs)}


def layer_options(graph: Graph, ops: list[Op], opts: LBIPruneOptions) -> dict[int, LBIPruneOptions]:
    """Options per synapse: with group=rows an output layer is pruned weight by weight instead (with the
    same share kept by every output), since its rows are the graph's outputs (class logits): a dropped
    row would leave a class with only its bias."""
    if opts.group is not Group.ROWS:
        return {id(op): opts for op in ops}
    last = output_layers(graph, ops)
    return {id(op): replace(opts, group=Group.NONE) if id(op) in last else opts for op in ops}


def _attach(graph: Graph, op: Op, plan: LayerPlan) -> None:
    """Put sp.mask(@w[.lbi], @w.mask) on op's weight operand."""
    w = op.operands[1]
    if plan.weight is not None:
        w = graph.add_weight(f"{w.name}.lbi", plan.weight.astype(graph.weights[w.name].dtype))
    m = graph.add_weight(f"{op.operands[1].name}.mask", plan.mask.astype(bool))
    masked = make_op(graph, "sp.mask", [w, m], {"nnz": int(plan.mask.sum()), "size": int(plan.mask.size)}, op.loc)
    insert_before(graph, op, [masked])
    op.operands[1] = masked.result


@register_pass("lbi-prune", summary="post-training weight masks by layer-wise LBI on calibration data "
                                    "(or by magnitude)", options=LBIPruneOptions, needs_data=True)
def lbi_prune(graph: Graph, ctx, opts: LBIPruneOptions) -> dict:
    """Mask every synapse weight; statistics: layers, weights, kept."""
    ops = synapses(graph)
    plans = plan_all(graph, ops, ctx, opts) if ops else {}
    groups = {i: o.group.value for i, o in layer_options(graph, ops, opts).items()}
    table = []
    for op in ops:
        name = op.operands[1].name
        plan = plans[id(op)]
        _attach(graph, op, plan)
        size, kept = int(plan.mask.size), int(plan.mask.sum())
        table.append({"layer": name, "op": op.kind, "weights": size, "kept": kept,
                      "sparsity": round(1 - kept / size, 4), "lbi_iterations": plan.iterations,
                      "group": groups[id(op)]})
    ctx.report.section("Pruning", table)
    return {"layers": len(ops), "weights": sum(r["weights"] for r in table), "kept": sum(r["kept"] for r in table)}
