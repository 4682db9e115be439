"""`snn-chain`: the NumPy backend's lowering of a whole spiking MLP onto one fused time loop.

A rate-coded spiking MLP made by `lower-lif` reads

    x -> snn.encode{constant} -> snn.lif -> (matmul -> add -> snn.lif)* -> matmul -> add -> snn.decode{membrane}

where the first synapse already runs once per sample before the encoder (its input is the same at every
step, so lower-lif hoists it out of the time loop). Run op by op, every stage writes a [T, N, H] array
and the next one reads it back. This pass replaces the whole chain by one `snn.chain` op, whose kernel
(mpc/snn/chain.py) steps through time once per sample with all membranes in small local arrays and
event-driven synapses (only the weight rows of the inputs that spiked are added). Synapses whose weight
density is at most `max_weight_density` are marked sparse: their kernel walks only the non-zero weights
of those rows, skipping zero weights as well as absent spikes. The default, 0, leaves every synapse
with at least one non-zero weight on dense rows: on the digits MLP's layers (64->32, 32->10) a dense
row is two or three vector additions, and benchmarks/bench_snn_chain.py measured the compressed rows
slower at every sparsity up to 95 % (see BENCHMARKS.md); wider layers may want it. Every intermediate value must have the
next stage as its only user (a chain whose spikes are also read elsewhere stays as it is). The values are
those of the op-by-op graph up to the order of the additions inside one synaptic current.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.errors import BadFlag
from mpc.ir import Graph, Op, erase, insert_before, make_op, replace_all_uses
from mpc.ir.ops_snn import DecodeMode, EncodeMode, ResetMode
from mpc.passmanager import register_pass

MATMULS = ("nn.matmul", "np.matmul_fast")


@dataclass(frozen=True)
class SnnChainOptions:
    """Synapses of a fused chain whose weight density is at most max_weight_density skip zero weights."""

    max_weight_density: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.max_weight_density <= 1.0:
            raise BadFlag(f"snn-chain: option max_weight_density must be in [0, 1], got {self.max_weight_density!r}")


class _Graph:
    """Producers and users of the graph's values (built once per pass run, kept up to date by rebuild)."""

    def __init__(self, graph: Graph):
        self.producer = {id(op.result): op for op in graph.ops if op.results}
        self.users = graph.users()
        self.outputs = {id(v) for v in graph.outputs}

    def sole_producer(self, value, kinds) -> Op | None:
        """The op of one of `kinds` producing value, when value's only user is the op that asked."""
        op = self.producer.get(id(value))
        if op is None or op.kind not in kinds or id(value) in self.outputs or len(self.users.get(id(value), [])) != 1:
            return None
        return op


def _synapse(g: _Graph, value) -> tuple[Op, Op] | None:
    """(matmul, add) computing value = x·W + b with W a 2-D weight and b a weight vector, or None."""
    add = g.sole_producer(value, ("nn.add",))
    if add is None or not (add.operands[1].is_weight and add.operands[1].type.rank <= 1):
        return None
    mm = g.sole_producer(add.operands[0], MATMULS)
    if mm is None or not (mm.operands[1].is_weight and mm.operands[1].type.rank == 2):
        return None
    return mm, add


def _match(g: _Graph, dec: Op) -> tuple[Op, list[Op], list[tuple[Op, Op]]] | None:
    """(encode, LIF layers first to last, synapses first to last) of the chain read out by dec, or None."""
    if dec.attrs.mode is not DecodeMode.MEMBRANE:
        return None
    lifs, synapses, value = [], [], dec.operands[0]
    while True:
        syn = _synapse(g, value)
        lif = g.sole_producer(syn[0].operands[0], ("snn.lif",)) if syn is not None else None
        if lif is None or not lif.operands[1].is_weight or len(lif.operands) != 2:
            return None   # a recurrent lif (third operand w_rec) keeps its own loop
        lifs.append(lif)
        synapses.append(syn)
        enc = g.sole_producer(lif.operands[0], ("snn.encode",))
        if enc is not None:
            break
        value = lif.operands[0]
    if enc.attrs.mode is not EncodeMode.CONSTANT or enc.operands[0].type.rank != 2:
        return None
    return enc, lifs[::-1], synapses[::-1]


def _density(graph: Graph, w) -> float:
    arr = np.asarray(graph.weights[w.name])
    return float(np.count_nonzero(arr) / max(arr.size, 1))


def _fuse(graph: Graph, dec: Op, enc: Op, lifs: list[Op], synapses, opts: SnnChainOptions) -> Op:
    """Replace encode ... decode by one snn.chain placed where the decode was."""
    operands = [enc.operands[0], lifs[0].operands[1]]
    for j, (mm, add) in enumerate(synapses):
        operands += [mm.operands[1], add.operands[1]] + ([lifs[j + 1].operands[1]] if j + 1 < len(lifs) else [])
    attrs = {"timesteps": enc.attrs.timesteps, "dt": enc.attrs.dt,
             "beta": [lif.attrs.beta for lif in lifs],
             "soft": [lif.attrs.reset is ResetMode.SOFT for lif in lifs],
             "refractory": [lif.attrs.refractory for lif in lifs], "v0": [lif.attrs.v0 for lif in lifs],
             "sparse": [bool(_density(graph, mm.operands[1]) <= opts.max_weight_density) for mm, _ in synapses],
             "readout_beta": dec.attrs.beta}
    fused = make_op(graph, "snn.chain", operands, attrs, dec.loc)
    insert_before(graph, dec, [fused])
    replace_all_uses(graph, dec.result, fused.result)
    erase(graph, dec)
    for j in reversed(range(len(lifs))):
        erase(graph, synapses[j][1])
        erase(graph, synapses[j][0])
        erase(graph, lifs[j])
    erase(graph, enc)
    return fused


@register_pass("snn-chain", summary="numpy lowering: a whole rate-coded spiking MLP (encode, LIF layers, "
                                    "membrane readout) into one fused snn.chain time loop",
               options=SnnChainOptions)
def snn_chain(graph: Graph, ctx, opts: SnnChainOptions) -> dict:
    """Fuse every matching chain; stats: chains, layers (LIF layers fused), sparse (synapses skipping zeros)."""
    stats = {"chains": 0, "layers": 0, "sparse": 0}
    for dec in [op for op in graph.ops if op.kind == "snn.decode"]:
        found = _match(_Graph(graph), dec)
        if found is None:
            continue
        fused = _fuse(graph, dec, *found, opts)
        stats["chains"] += 1
        stats["layers"] += len(found[1])
        stats["sparse"] += sum(fused.attrs.sparse)
    return stats
