"""`snn-event`: the NumPy backend's lowering of synapses on spike trains onto event-driven kernels.

A `nn.matmul` (or `np.matmul_fast`) whose input is a spike train [T, N, D] (the result of snn.lif,
snn.maxpool or an already lowered snn.event_linear with neurons, possibly reshaped) and whose second operand is a 2-D
weight, together with the `nn.add` of a bias and the `snn.lif` that follow it when they are its only
users, becomes one `snn.event_linear`: model.py then adds only the weight rows of the inputs that
spiked and runs the LIF update in the same loop. That beats BLAS's dense product only while spikes are
sparse, so the choice is per layer, from the input spike density measured on the calibration data
(at most 256 samples, run through the interpreter): layers whose density is at most `max_density`
(weights of at most `large` = 16384 entries, where a BLAS call is short) or `max_density_large`
(bigger weights) are lowered; the others stay dense. Without calibration data every such layer is
lowered. The defaults (0.35, 0.1) follow the crossovers measured by benchmarks/bench_snn_event.py
with 2 threads (64->32: event faster at densities up to 0.3-0.5; 256->256: up to 0.2; 1024->256: up to
0.05), where the dense path mixes BLAS's thread pool with numba's; single-threaded, BLAS is faster and
the crossovers drop to 0.02 (64->32) and 0.1 (wider layers): see BENCHMARKS.md.
The numbers are the dense layer's up to the order of
the additions inside one current.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.data import Dataset
from mpc.errors import BadFlag
from mpc.ir import Graph, Op, erase, insert_before, make_op, replace_all_uses
from mpc.passmanager import register_pass

SPIKING = ("snn.lif", "snn.maxpool")
MATMULS = ("nn.matmul", "np.matmul_fast")
RESHAPES = ("nn.reshape", "nn.flatten")
CALIB_SAMPLES = 256


@dataclass(frozen=True)
class SnnEventOptions:
    """Synapses whose input spike density is at most max_density run event-driven (max_density_large for
    weights of more than `large` entries, where BLAS is more efficient)."""

    max_density: float = 0.35
    max_density_large: float = 0.1
    large: int = 16384

    def __post_init__(self):
        for name in ("max_density", "max_density_large"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BadFlag(f"snn-event: option {name} must be in [0, 1], got {getattr(self, name)!r}")


def _sole_user(graph: Graph, op: Op, kind: str, users) -> Op | None:
    """The only user of op's result when it has kind `kind` and the result is not a graph output."""
    if any(v is op.result for v in graph.outputs):
        return None
    us = users.get(id(op.result), [])
    return us[0] if len(us) == 1 and us[0].kind == kind and us[0].operands[0] is op.result else None


def _densities(graph: Graph, ctx) -> dict[int, float]:
    """Spike density of each spiking op's result on (the head of) the calibration data, by value id."""
    data = getattr(ctx, "dataset", None) if ctx is not None else None
    if data is None or not data.batched or data.size == 0:
        return {}
    from mpc.calib import capture
    head = Dataset({k: v[:CALIB_SAMPLES] for k, v in data.feeds.items()}, None, data.source)
    sums: dict[int, list[float]] = {}

    def hook(op, inputs, outputs):
        if op.kind in SPIKING:
            acc = sums.setdefault(id(op.result), [0.0, 0.0])
            acc[0] += float(np.count_nonzero(outputs[0]))
            acc[1] += outputs[0].size
    capture(graph, head, (), hook=hook)
    return {k: s / max(n, 1.0) for k, (s, n) in sums.items()}


def _chain(graph: Graph, mm: Op, users) -> tuple[Op | None, Op | None]:
    """The bias add (a weight vector) and the snn.lif that follow the matmul, when they fuse."""
    add = _sole_user(graph, mm, "nn.add", users)
    if add is not None and not (add.operands[1].is_weight and add.operands[1].type.rank == 1):
        add = None
    lif = _sole_user(graph, add or mm, "snn.lif", users)
    if lif is not None and len(lif.operands) == 3:   # a recurrent lif (w_rec) keeps its own dense loop
        lif = None
    return add, lif


def _spike_source(graph: Graph, x):
    """The spiking op result x comes from (through reshapes, which keep 0/1 values), or None."""
    producers = {id(op.result): op for op in graph.ops}
    op = producers.get(id(x))
    while op is not None and op.kind in RESHAPES:
        op = producers.get(id(op.operands[0]))
    return op.result if op is not None and (op.kind in SPIKING or _fires(op)) else None


def _fires(op: Op) -> bool:
    """Whether op is an snn.event_linear with neurons (its result is spikes)."""
    return op.kind == "snn.event_linear" and len(op.operands) == 4


def _lower(graph: Graph, mm: Op, density: float, users) -> tuple[Op, Op]:
    """Replace matmul [+ add] [+ lif] by one snn.event_linear placed where the matmul was."""
    add, lif = _chain(graph, mm, users)
    w = mm.operands[1]
    h = w.type.shape[1]
    bias = add.operands[1] if add is not None else graph.add_weight(f"{w.name}.zero_bias",
                                                                   np.zeros(h, graph.weights[w.name].dtype))
    attrs = {"density": round(density, 4)}
    operands = [mm.operands[0], w, bias]
    if lif is not None:
        attrs |= {f: getattr(lif.attrs, f) for f in ("dt", "beta", "reset", "refractory", "v0")}
        operands.append(lif.operands[1])
    chain = [op for op in (mm, add, lif) if op is not None]
    fused = make_op(graph, "snn.event_linear", operands, attrs, chain[-1].loc)
    insert_before(graph, mm, [fused])
    replace_all_uses(graph, chain[-1].result, fused.result)
    for op in reversed(chain):
        erase(graph, op)
    return chain[-1], fused


@register_pass("snn-event", summary="numpy lowering: synapses on sparse spike trains (+ their LIF) into "
                                    "event-driven snn.event_linear", options=SnnEventOptions)
def snn_event(graph: Graph, ctx, opts: SnnEventOptions) -> dict:
    """Lower the synapses on spikes whose measured density is at most max_density; stats: event, dense."""
    if not any(op.kind in SPIKING for op in graph.ops):
        return {"event": 0, "dense": 0}
    dens = _densities(graph, ctx)
    event = dense = 0
    for mm in [op for op in graph.ops if op.kind in MATMULS]:
        x, w = mm.operands[0], mm.operands[1]
        src = _spike_source(graph, x)
        if src is None or not (w.is_weight and w.type.rank == 2 and x.type.rank == 3):
            continue
        d = dens.get(id(src), -1.0)
        if d > (opts.max_density if w.type.shape[0] * w.type.shape[1] <= opts.large else opts.max_density_large):
            dense += 1
            continue
        old, fused = _lower(graph, mm, d, graph.users())
        if id(old.result) in dens:   # the fused op's spikes are the replaced snn.lif's
            dens[id(fused.result)] = dens[id(old.result)]
        event += 1
    return {"event": event, "dense": dense}
