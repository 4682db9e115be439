"""Readout repair of a converted spiking network: its readout synapse replaced by the certified convex optimum.

A rate-converted network (lower-lif) ends in a readout synapse on the last LIF layer's spikes s_t, read out by
membrane: logits = (1/T) Σ_t β^(T−1−t) (W s_t + b) = W φ + c b, with φ = (1/T) Σ_t β^(T−1−t) s_t the
(leak-weighted) spike rate of each hidden unit and c = (1/T) Σ_t β^(T−1−t). The readout is therefore linear in
φ: with the hidden layers frozen (the witnesses) the spike dictionary [φ, c] of the training set turns
training W and b with a group penalty on each hidden unit's class weights into the convex softmax group
Lasso of mpc.snn.cvx, solved to a certified relative duality gap. The bias column c is penalized like the
others (so the problem stays a plain group Lasso). At small T conversion loses accuracy through rate
quantization; re-fitting the readout to the spike rates the network really produces recovers much of it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mpc.calib import capture
from mpc.data import Dataset
from mpc.errors import BadInput, UnsupportedOp
from mpc.ir import Graph, Op
from mpc.snn.cvx import Loss, Solution, build_dictionary, labels_matrix, lambda_max, solve


@dataclass
class Readout:
    """The ops of a membrane readout: snn.decode ← [nn.add bias] ← nn.matmul ← snn.lif (the witness)."""

    decode: Op
    matmul: Op
    add: Op | None
    lif: Op


def _producer(v, kind: str) -> Op | None:
    op = v.producer
    return op if op is not None and op.kind == kind else None


def find_readout(graph: Graph) -> Readout:
    """The readout of the graph's single output; UnsupportedOp naming the op when it has another shape."""
    if len(graph.outputs) != 1 or graph.outputs[0].producer is None:
        raise BadInput("readout repair wants a graph with one computed output")
    dec = graph.outputs[0].producer
    if dec.kind != "snn.decode" or dec.attrs.mode.value != "membrane":
        raise UnsupportedOp(dec.kind, dec.loc, "readout repair wants the output read by snn.decode mode membrane")
    add = _producer(dec.operands[0], "nn.add")
    if add is not None and not (add.operands[1].is_weight and add.operands[1].type.rank == 1):
        raise UnsupportedOp(add.kind, add.loc, "readout repair wants a bias weight [K] added to the readout")
    mm = _producer(add.operands[0] if add else dec.operands[0], "nn.matmul")
    if mm is None or not mm.operands[1].is_weight:
        raise UnsupportedOp(dec.kind, dec.loc, "readout repair wants an nn.matmul with a weight before the decode")
    lif = _producer(mm.operands[0], "snn.lif")
    if lif is None or mm.operands[0].type.rank != 3:
        raise UnsupportedOp(mm.kind, mm.loc, "readout repair wants the readout to read snn.lif spikes [T, N, H]")
    return Readout(dec, mm, add, lif)


def _time_weights(steps: int, beta: float) -> np.ndarray:
    """(1/T) β^(T−1−t) for t = 0..T−1: how the membrane decode weighs step t."""
    return beta ** np.arange(steps - 1, -1, -1, dtype=np.float64) / steps


def witness_features(graph: Graph, ro: Readout, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(φ [N, H] of the witness spikes, the graph's output [N, K]) on `data`, through the interpreter."""
    parts = []

    def record(op, inputs, outputs):
        if op is ro.lif:
            s = np.asarray(outputs[0], np.float64)
            parts.append(np.tensordot(_time_weights(s.shape[0], ro.decode.attrs.beta), s, axes=1))

    out = capture(graph, data, [graph.outputs[0]], hook=record)[graph.outputs[0].name]
    return np.concatenate(parts), np.asarray(out, np.float64)


@dataclass
class RepairResult:
    """What readout repair did: the certificate, the dictionary size and train accuracy before and after."""

    solution: Solution
    columns: int
    dictionary: int
    accuracy_before: float
    accuracy_after: float
    seconds: float

    def section(self, timings: bool = False) -> dict:
        """The report section (report.json / report.md); solve seconds only with `timings` (reports are
        byte-identical for the same input and flags otherwise)."""
        s = self.solution
        out = {"primal": s.primal, "dual": s.dual, "gap": s.gap, "relative gap": s.rel_gap,
                "converged": s.converged, "stopped because": s.reason, "iterations": s.iterations,
                "lambda": s.lam, "dictionary columns": self.dictionary, "witness units": self.columns,
                "train accuracy before": self.accuracy_before, "train accuracy after": self.accuracy_after}
        if timings:
            out["solve seconds"] = round(s.seconds, 4)
        return out


def _replace_operand(graph: Graph, op: Op, name: str, array: np.ndarray) -> None:
    old = op.operands[1]
    op.operands[1] = graph.add_weight(f"{old.name}.{name}", array.astype(graph.weights[old.name].dtype))
    if not any(v.name == old.name for o in graph.ops for v in o.operands):
        graph.remove_weight(old.name)


def repair_readout(graph: Graph, data: Dataset, lam_ratio: float = 1e-2, tol: float = 1e-6,
                   max_iter: int = 50_000) -> RepairResult:
    """Replace the readout of `graph` (in place; new weights `<name>.cvx`) by the certified group-Lasso optimum."""
    if data.labels is None:
        raise BadInput(f"{data.source}: readout repair needs 'labels' in the data file")
    t0 = time.perf_counter()
    ro = find_readout(graph)
    phi, before = witness_features(graph, ro, data)
    k = before.shape[1]
    const = float(_time_weights(graph_steps(ro), ro.decode.attrs.beta).sum())
    cols = np.hstack([phi, np.full((phi.shape[0], 1), const)]) if ro.add else phi
    d = build_dictionary(cols)
    y = labels_matrix(data.labels, Loss.SOFTMAX, k)
    sol = solve(d.phi, y, lam_ratio * lambda_max(d.phi, y, Loss.SOFTMAX, True), Loss.SOFTMAX, True, tol, max_iter)
    full = d.expand(sol.beta)
    _replace_operand(graph, ro.matmul, "cvx", full[:phi.shape[1]])
    if ro.add:
        _replace_operand(graph, ro.add, "cvx", full[phi.shape[1]])
    after = capture(graph, data, [graph.outputs[0]])[graph.outputs[0].name]
    labels = np.asarray(data.labels)
    return RepairResult(sol, cols.shape[1], d.phi.shape[1], float(np.mean(before.argmax(1) == labels)),
                        float(np.mean(after.argmax(1) == labels)), time.perf_counter() - t0)


def graph_steps(ro: Readout) -> int:
    """T, the readout's number of steps (static in a converted graph)."""
    steps = ro.lif.results[0].type.shape[0]
    if not isinstance(steps, int):
        raise UnsupportedOp(ro.lif.kind, ro.lif.loc, f"readout repair wants a static step count, got {steps}")
    return steps
