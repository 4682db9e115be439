"""lower-hopfield: a feedforward chain of dense layers becomes one layered Hopfield network.

The graph (after canonicalize) must be `x -> [matmul(@W) (+ @b) (activation)]*L -> output`: dense
layers with weight operands, optional bias adds and elementwise relu/sigmoid/tanh activations. It
becomes `s = hop.relax(x, @theta0, @bias, blocks...)` and `y = hop.readout(s)`: the state s
concatenates the L layers, theta0 is the first layer's weight, and the blocks are those of
W_lam = theta - theta^T + 2 lam theta^T (theta_k = layer k+1's weight, transposed to [out, in]), as in
R. Hoier et al., "Dyadic learning in recurrent and feedforward models" (2024). lam = 0.5 reproduces the
feedforward net exactly; the relaxation then reaches it in one Gauss-Seidel sweep or L Jacobi
iterations. Convolutions (which would need im2col blocks) and any other op are rejected, naming the op.

The report gets a "Hopfield" section: layer sizes, the Lipschitz bounds of mpc.hop.analysis, and the
convergence of the relaxation (iterations, final residual max|s - f(W s + theta0 x + b)|) on the
calibration data, or on seeded U(0, 1) samples when there is none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpc.errors import UNKNOWN, BadFlag, UnsupportedOp
from mpc.hop import analysis
from mpc.hop import kernels as HK
from mpc.ir import Graph, make_op
from mpc.ir.ops_hop import Act, Schedule, couplings
from mpc.passmanager import register_pass

ACTS = {"nn.relu": Act.RELU, "nn.sigmoid": Act.SIGMOID, "nn.tanh": Act.TANH}
REPORT_SAMPLES = 64


@dataclass(frozen=True)
class LowerHopfieldOptions:
    """Options of lower-hopfield: lam (W_lam's interpolation), the relaxation schedule, tol, max_iter, damping."""

    lam: float = 0.5
    schedule: Schedule = Schedule.SWEEPS
    tol: float = 1e-6
    max_iter: int = 100
    damping: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.lam) and 0.0 <= self.lam <= 1.0):
            raise BadFlag(f"lower-hopfield: option lam must be in [0, 1], got {self.lam!r}")
        if not 0 < self.damping <= 1:
            raise BadFlag(f"lower-hopfield: option damping must be in (0, 1], got {self.damping!r}")
        if not (math.isfinite(self.tol) and self.tol >= 0) or self.max_iter < 1:
            raise BadFlag(f"lower-hopfield: tol must be >= 0 and max_iter >= 1, got {self.tol!r}, {self.max_iter!r}")


@dataclass
class Layer:
    """One dense layer of the chain: weight [out, in] (float), bias [out], activation."""

    weight: np.ndarray
    bias: np.ndarray
    act: Act


def _reject(op, why: str):
    raise UnsupportedOp(op.kind, op.loc, f"the hopfield target {why}")


def _layer_ops(graph: Graph, i: int, cur) -> tuple[Layer, int, object]:
    """The layer starting at op i (its matmul), the index after it, and its output value."""
    op = graph.ops[i]
    if op.kind == "nn.conv2d":
        _reject(op, "takes dense layers only (a convolution would need im2col blocks)")
    if op.kind != "nn.matmul" or op.operands[0] is not cur or not op.operands[1].is_weight \
            or op.operands[1].type.rank != 2:
        _reject(op, "expects a chain of matmul(x, @W) [+ @b] [relu|sigmoid|tanh] layers")
    w = np.asarray(graph.weights[op.operands[1].name])
    layer, cur, i = Layer(w.T.copy(), np.zeros(w.shape[1], w.dtype), Act.IDENTITY), op.result, i + 1
    if i < len(graph.ops) and graph.ops[i].kind == "nn.add" and graph.ops[i].operands[0] is cur:
        b = graph.ops[i].operands[1]
        if not b.is_weight or b.type.shape != (w.shape[1],):
            _reject(graph.ops[i], f"expects a bias weight of shape [{w.shape[1]}] after the matmul")
        layer.bias, cur, i = np.asarray(graph.weights[b.name]), graph.ops[i].result, i + 1
    if i < len(graph.ops) and graph.ops[i].kind in ACTS and graph.ops[i].operands[0] is cur:
        layer.act, cur, i = ACTS[graph.ops[i].kind], graph.ops[i].result, i + 1
    return layer, i, cur


def chain(graph: Graph) -> list[Layer]:
    """The dense layers of a one-input, one-output feedforward chain; UnsupportedOp otherwise."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedOp("graph", graph_loc(graph), "the hopfield target needs one input and one output")
    layers, i, cur = [], 0, graph.inputs[0]
    while i < len(graph.ops):
        layer, i, cur = _layer_ops(graph, i, cur)
        layers.append(layer)
    if graph.inputs[0].type.rank != 2:
        raise UnsupportedOp("graph", graph_loc(graph), f"the hopfield target needs an input [N, D], got "
                                                       f"{graph.inputs[0].type}")
    if cur is not graph.outputs[0]:
        raise UnsupportedOp("graph", graph_loc(graph), "the hopfield target needs the last layer to be the output")
    if len(layers) < 2:
        raise UnsupportedOp("graph", graph_loc(graph), "the hopfield target needs at least two dense layers")
    return layers


def graph_loc(graph: Graph):
    """The location of the graph's last op (or unknown)."""
    return graph.ops[-1].loc if graph.ops else UNKNOWN


def _samples(graph: Graph, ctx, dtype) -> tuple[np.ndarray, str]:
    """Up to REPORT_SAMPLES inputs: the calibration data, or seeded U(0, 1) samples."""
    x_val = graph.inputs[0]
    if ctx.dataset is not None and x_val.name in ctx.dataset.feeds:
        x = np.asarray(ctx.dataset.feeds[x_val.name][:REPORT_SAMPLES], dtype)
        return x, f"{x.shape[0]} samples of {ctx.dataset.source}"
    x = np.random.default_rng(ctx.seed).uniform(0, 1, (REPORT_SAMPLES, x_val.type.shape[1])).astype(dtype)
    return x, f"{REPORT_SAMPLES} seeded U(0, 1) samples"


def hop_report(graph: Graph, op, ctx) -> dict:
    """The report section of a hop.relax op: structure, Lipschitz bounds, convergence on data."""
    a = op.attrs
    theta0, bias, *blocks = [np.asarray(graph.weights[v.name]) for v in op.operands[1:]]
    pairs, acts = couplings(a), [f.value for f in a.acts]
    section = {"sizes": list(a.sizes), "lambda": a.lam, "blocks": list(a.blocks)}
    section |= analysis.lipschitz(analysis.assemble(a.sizes, pairs, blocks))
    ff = [b for p, b in zip(pairs, blocks) if p[0] == p[1] + 1]
    section["feedforward_lipschitz"] = analysis.feedforward_bound([theta0, *ff])
    x, source = _samples(graph, ctx, theta0.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        s, iters, ok = HK.hop_relax_stats(x, theta0, bias, blocks, a.sizes, acts, pairs,
                                          a.schedule is Schedule.JACOBI, a.tol, a.max_iter, a.damping)
        res = HK.hop_residual(s, x, theta0, bias, blocks, a.sizes, acts, pairs)
    return section | {"data": source, "schedule": a.schedule.value, "iterations": iters, "converged": ok,
                      "final_residual": res}


@register_pass("lower-hopfield", summary="turn a dense feedforward chain into one Hopfield relaxation (W_lam)",
               options=LowerHopfieldOptions)
def lower_hopfield(graph: Graph, ctx, options: LowerHopfieldOptions) -> dict:
    """Replace the chain by hop.relax + hop.readout (see the module docstring)."""
    if graph.ops and all(op.kind.startswith("hop.") for op in graph.ops):
        return {"layers": 0, "units": 0, "blocks": 0}   # already lowered: nothing to do
    layers = chain(graph)
    loc, out = graph.ops[0].loc, graph.outputs[0]
    sizes = tuple(int(layer.weight.shape[0]) for layer in layers)
    pairs, blocks = analysis.lambda_blocks([layer.weight for layer in layers[1:]], options.lam)
    theta0, bias = layers[0].weight, np.concatenate([layer.bias for layer in layers])
    attrs = {"sizes": sizes, "acts": tuple(layer.act for layer in layers),
             "blocks": tuple(f"{k}<{j}" for k, j in pairs), "lam": options.lam, "schedule": options.schedule,
             "tol": options.tol, "max_iter": options.max_iter, "damping": options.damping}
    operands = [graph.add_weight(name, arr) for name, arr in
                [("hop.theta0", theta0), ("hop.bias", bias)] + [(f"hop.w{k}_{j}", b) for (k, j), b in
                                                               zip(pairs, blocks)]]
    relax = make_op(graph, "hop.relax", [graph.inputs[0]] + operands, attrs, loc)
    readout = make_op(graph, "hop.readout", [relax.result], {"offset": sum(sizes[:-1]), "size": sizes[-1]}, loc)
    readout.results[0].name = out.name
    graph.ops = [relax, readout]   # the whole chain is replaced; dce drops its weights
    graph.outputs = [readout.result]
    ctx.report.section("Hopfield", hop_report(graph, relax, ctx))
    return {"layers": len(layers), "units": sum(sizes), "blocks": len(pairs)}


__all__ = ["LowerHopfieldOptions", "chain", "hop_report", "lower_hopfield"]
