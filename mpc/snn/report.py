"""What `mpc verify` reports for a spiking conversion: per layer firing rates, spikes per inference
and the Pearson correlation of rates with the source's activations; and the cost report.

Cost: the source network performs MACs (one multiply-accumulate per weight use); the spiking one
performs a synaptic operation (SynOp, one accumulate) per spike and per target it reaches, so
SynOps = Σ spikes × fan-out, counted on every synapse whose input is time-major (a value that is
not a 0/1 spike, such as the output of an average pool, counts one event per nonzero). Synapses that
run before the encoder (on the constant input current, once per sample) count as MACs. Energy uses
one table, `ENERGY_PJ` (M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, 45 nm): a 32-bit float MAC = 3.7 pJ multiply + 0.9 pJ add = 4.6 pJ; a SynOp is one
32-bit float add (0.9 pJ), or a 32-bit integer add (0.1 pJ) with integer synaptic weights.
"""
from __future__ import annotations

import numpy as np

from mpc.data import Pearson, batches
from mpc.ir import Graph, Op, clone, run
from mpc.passmanager import run_pipeline

ENERGY_PJ = {"fp32_mult": 3.7, "fp32_add": 0.9, "fp32_mac": 4.6, "int32_add": 0.1}
NEURONS = ("snn.lif", "snn.nlif")
SYNAPSES = ("nn.matmul", "nn.conv2d", "mp.dot", "mp.conv2d")


def fan_out(op: Op, w: np.ndarray | None = None) -> np.ndarray:
    """Targets each input unit of one sample reaches through a synapse: shape of the input's sample.

    With the synapse's effective weight `w` (a pruned one), only its non-zero weights count."""
    x = op.operands[0].type.shape
    if op.kind in ("nn.matmul", "mp.dot"):
        axis = 1 if op.kind == "nn.matmul" else 0   # nn.matmul: W [in, out]; mp.dot: W [out, in]
        if w is not None:
            return np.count_nonzero(w, axis=axis).astype(np.int64)
        return np.full(x[-1:], op.operands[1].type.shape[axis], np.int64)
    a = op.attrs
    m, _, kh, kw = op.operands[1].type.shape
    h, wd = x[-2:]
    oh, ow = op.result.type.shape[-2:]
    taps = _tap_fan_out(w, x[-3], a.group) if w is not None else np.full((x[-3], kh, kw), m // a.group)
    fan = np.zeros((x[-3], h, wd), np.int64)
    for i in range(kh):
        for j in range(kw):
            di, dj = i * a.dilations[0], j * a.dilations[1]
            reach = np.zeros((h + a.pads[0] + a.pads[2], wd + a.pads[1] + a.pads[3]), np.int64)
            reach[di:di + oh * a.strides[0]:a.strides[0], dj:dj + ow * a.strides[1]:a.strides[1]] = 1
            fan += reach[a.pads[0]:a.pads[0] + h, a.pads[1]:a.pads[1] + wd][None] * taps[:, i, j, None, None]
    return fan


def _tap_fan_out(w: np.ndarray, channels: int, group: int) -> np.ndarray:
    """[C, kh, kw]: the non-zero output weights of each input channel at each kernel tap."""
    m, cg = w.shape[:2]
    per = m // group
    return np.stack([np.count_nonzero(w[(c // cg) * per:(c // cg + 1) * per, c % cg], axis=0)
                     for c in range(channels)]).astype(np.int64)


def effective_weight(graph: Graph, op: Op) -> np.ndarray | None:
    """A synapse's weight as it acts (a mask applied), or None when it is not a static weight."""
    v = op.operands[1]
    if v.is_weight:
        return graph.weights[v.name]
    p = v.producer
    if p is None or p.kind != "sp.mask" or not all(u.is_weight for u in p.operands):
        return None
    return np.where(graph.weights[p.operands[1].name], graph.weights[p.operands[0].name], 0)


def macs(op: Op) -> int:
    """Multiply-accumulates of one sample through a synapse (dense)."""
    per_out = int(np.prod(op.operands[1].type.shape[1:])) if op.kind in ("nn.conv2d", "mp.conv2d", "mp.dot") \
        else int(op.operands[1].type.shape[0])
    out = op.result.type.shape
    lead = 2 if _timed(op.operands[0]) else 1
    return per_out * int(np.prod(out[lead:]))


def _timed(v) -> bool:
    """Whether a value is time-major: produced downstream of an snn.encode."""
    stack, seen = [v], set()
    while stack:
        cur = stack.pop()
        p = cur.producer
        if p is None or id(p) in seen:
            continue
        if p.kind == "snn.encode":
            return True
        if p.kind == "snn.decode":
            continue
        seen.add(id(p))
        stack.extend(u for u in p.operands if not u.is_weight)
    return False


def source_activations(source: Graph) -> tuple[Graph, list[list[Op]]]:
    """A canonicalized clone of the source and its activations in order: each ReLU [and the max-pool right after it]."""
    g = clone(source)
    run_pipeline(g, "canonicalize")
    users = g.users()
    acts = []
    for op in g.ops:
        if op.kind != "nn.relu":
            continue
        after = users.get(id(op.result), [])
        acts.append([op] + [after[0]] * (len(after) == 1 and after[0].kind == "nn.maxpool2d"))
    return g, acts


def _coded_value(op: Op, s: np.ndarray) -> np.ndarray:
    """What a neuron layer's spikes encode: the rate (LIF), or the kernel value at the next readout (n-LIF)."""
    if op.kind == "snn.lif":
        return s.mean(0)
    from mpc.snn.kernels import snn_decode, window_steps
    a = op.attrs
    readout = (a.layer + 1) * window_steps(a.dt, a.window)
    return snn_decode(s, "ttfs", 1.0, a.dt, a.tau, a.window, readout)


def _layer_name(op: Op) -> str:
    return f"nlif{op.attrs.layer}" if op.kind == "snn.nlif" else op.operands[1].name.removesuffix(".theta")


def spiking_report(graph: Graph, source: Graph, data, batch: int = 256) -> dict:
    """Firing rates, spikes, Pearson vs the source's activations, SynOps, MACs and energy on `data`."""
    neurons = [op for op in graph.ops if op.kind in NEURONS]
    synapses = [op for op in graph.ops if op.kind in SYNAPSES]
    src, src_acts = source_activations(source)
    spikes = np.zeros(len(neurons))
    events, dense_events = np.zeros(len(synapses)), np.zeros(len(synapses))
    # SynOps count the non-zero fan-out: a pruned synapse does no work (spikes × non-zero fan-out)
    fans = [fan_out(op, effective_weight(graph, op)) for op in synapses]
    pear = [Pearson() for _ in neurons]
    for feeds, _ in batches(data, batch):
        got = run(graph, feeds, keep_all=True)
        ref = run(src, feeds, keep_all=True)
        for i, op in enumerate(neurons):
            s = got[op.result.name]
            spikes[i] += float(np.count_nonzero(s))
            match = [ref[a.result.name] for a in src_acts[i] if a.result.type.shape[1:] == s.shape[2:]] \
                if i < len(src_acts) else []
            if match:
                pear[i].add(match[0], _coded_value(op, s))
        for j, op in enumerate(synapses):
            if _timed(op.operands[0]):
                nz = np.count_nonzero(got[op.operands[0].name], axis=(0, 1))
                events[j] += float((nz * fans[j]).sum())
                dense_events[j] += float((nz * fan_out(op)).sum())
    n = data.size
    layers = []
    for i, op in enumerate(neurons):
        units = int(np.prod(op.result.type.shape[2:]))
        steps = int(op.result.type.shape[0])
        layers.append({"layer": _layer_name(op),
                       "neurons": units, "spikes_per_inference": spikes[i] / n,
                       "firing_rate": spikes[i] / (n * units * steps), "pearson": pear[i].value()})
    c = cost(graph, source, synapses, events / n)
    c["synops_dense_fan_out"] = float(dense_events.sum() / n)   # the same spikes through unpruned synapses
    return {"layers": layers, "cost": c}


def cost(graph: Graph, source: Graph, synapses: list[Op], synops_per_syn: np.ndarray) -> dict:
    """SynOps and MACs per inference and the energy estimate from ENERGY_PJ."""
    src, _ = source_activations(source)
    source_macs = sum(macs(op) for op in src.ops if op.kind in SYNAPSES)
    dense_macs = sum(macs(op) for op in synapses if not _timed(op.operands[0]))
    synops = float(synops_per_syn.sum())
    e_src = source_macs * ENERGY_PJ["fp32_mac"]
    e_snn = dense_macs * ENERGY_PJ["fp32_mac"] + synops * ENERGY_PJ["fp32_add"]
    e_int = dense_macs * ENERGY_PJ["fp32_mac"] + synops * ENERGY_PJ["int32_add"]
    return {"source_macs": source_macs, "dense_macs": dense_macs, "synops": synops,
            "energy_source_pj": e_src, "energy_snn_pj": e_snn, "energy_snn_int_pj": e_int,
            "energy_table": "Horowitz ISSCC 2014, 45 nm: fp32 MAC 4.6 pJ (mult 3.7 + add 0.9), int32 add 0.1 pJ"}


def print_spiking(r: dict) -> None:
    """The spiking section of the verify table."""
    print(f"\n  {'neuron layer':<18} {'neurons':>7} {'rate':>7} {'spikes/inf':>11} {'pearson':>8}")
    for row in r["layers"]:
        p = "-" if row["pearson"] is None else f"{row['pearson']:.4f}"
        print(f"  {row['layer']:<18} {row['neurons']:>7} {row['firing_rate']:>7.4f} "
              f"{row['spikes_per_inference']:>11.1f} {p:>8}")
    c = r["cost"]
    print(f"\n  per inference: source {c['source_macs']} MACs ({c['energy_source_pj'] / 1e3:.2f} nJ); "
          f"spiking {c['synops']:.0f} SynOps + {c['dense_macs']} MACs ({c['energy_snn_pj'] / 1e3:.2f} nJ, "
          f"{c['energy_snn_int_pj'] / 1e3:.2f} nJ with int32 synapses)")
    if c.get("synops_dense_fan_out", c["synops"]) > c["synops"]:
        print(f"  pruned synapses: {c['synops']:.0f} SynOps = spikes x non-zero fan-out, "
              f"{c['synops'] / c['synops_dense_fan_out']:.1%} of the {c['synops_dense_fan_out']:.0f} "
              f"the same spikes would cost at dense fan-out")
    print(f"  energy table: {c['energy_table']}")
