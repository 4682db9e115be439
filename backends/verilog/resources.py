"""Analytical resource counts of the emitted RTL, per module, from the lowered hw IR (no synthesis).

Counts follow the datapath each renderer writes (backends/verilog/layers.py, elementwise.py):
adders (adds, subtracts and negations) by width, comparators, multipliers, flip-flops, ROM bits,
cycles per inference (latency) and the initiation interval of the whole design (the slowest layer's
latency plus the cycle in which it takes the next input), and throughput at CLOCK_MHZ. MP layers have no multipliers.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
from mpc.backends.verilog.layers import SHIFT_BITS, gain_width, mac_cycles, mac_schedule, mp_cycles
from mpc.backends.verilog.lif import count_snn
from mpc.backends.verilog.lutmodel import estimate_ice40

CLOCK_MHZ = 100.0   # the stated clock for throughput (not a timing result)


def _mp(op, graph) -> dict:
    a = op.attrs
    h, d = op.operands[1].type.shape[0], math.prod(op.operands[1].type.shape[1:])
    terms = op.operands[2].type.shape[1]
    p, b, wo = a.parallel, a.width, a.to.width
    adders = Counter({b: p * (12 * d + 6)})   # per element and side: u, |u|, 2 subtracts, 2 accumulates
    adders[gain_width(op, graph)] += p * terms
    cmp = p * (2 * d + 4 * d + 2 + 2)   # max, the [.]+ tests, f >= gamma, saturation
    groups = h // p
    positions = math.prod(op.results[0].type.shape[2:]) if op.kind == "hw.mp_conv2d" else 1
    ff = 3 + max(1, (groups - 1).bit_length()) + max(1, (a.halvings - 1).bit_length()) + \
        math.prod(op.operands[0].type.shape[1:]) * op.operands[0].type.dtype.width + h * positions * wo + \
        p * (4 + 2 * d) * b
    rom = groups * p * (d * op.operands[1].type.dtype.width + terms * (SHIFT_BITS + 2))
    return {"kind": op.kind, "adders": adders, "comparators": cmp, "multipliers": 0, "flip_flops": ff,
            "rom_bits": rom, "latency_cycles": mp_cycles(op), "pe": p}


def _mac(op, graph) -> dict:
    a = op.attrs
    w = np.asarray(graph.weights[op.operands[1].name])
    d, h = w.shape
    p, wo = a.parallel, a.to.width
    entries = len(mac_schedule(w, p))
    pw = op.operands[0].type.dtype.width + op.operands[1].type.dtype.width
    jb = max(1, (d - 1).bit_length())
    ff = 3 + max(1, (entries - 1).bit_length()) + d * op.operands[0].type.dtype.width + h * wo + p * a.width
    return {"kind": op.kind, "adders": Counter({a.width: p}), "comparators": 2 * p,
            "multipliers": p, "multiplier_bits": pw, "flip_flops": ff,
            "rom_bits": entries * (p * op.operands[1].type.dtype.width + jb + 2), "latency_cycles": mac_cycles(op, graph),
            "pe": p, "zero_weights_skipped": int(d * h - sum(1 for e in mac_schedule(w, p) for v in e[2] if v))}


def _elementwise(op, graph) -> dict:
    n = math.prod(op.results[0].type.shape[1:])
    wo = op.results[0].type.dtype.width
    adds = 0 if op.kind == "fx.relu" else n
    return {"kind": op.kind, "adders": Counter({wo + 2: adds}) if adds else Counter(), "comparators": n * (1 if
            op.kind == "fx.relu" else 2), "multipliers": 0, "flip_flops": 0, "rom_bits": 0, "latency_cycles": 0,
            "pe": n}


def resources(graph, modules: list) -> dict:
    """Per-module counts and totals of a lowered graph; `modules`: (module name, op) in chain order."""
    count = {"hw.mp_dense": _mp, "hw.mp_conv2d": _mp, "hw.mac_dense": _mac}
    layers = {}
    for name, op in modules:
        r = count_snn(op, graph) or count.get(op.kind, _elementwise)(op, graph)
        r["estimate_ice40"] = estimate_ice40(op, graph, r)
        r["adders"] = {str(k): v for k, v in sorted(r["adders"].items()) if v}
        layers[name] = r
    latency = sum(r["latency_cycles"] for r in layers.values())
    ii = max(r["latency_cycles"] for r in layers.values()) + 1
    total = {k: sum(r[k] for r in layers.values()) for k in ("comparators", "multipliers", "flip_flops", "rom_bits")}
    total["estimate_ice40"] = {k: sum(r["estimate_ice40"][k] for r in layers.values())
                               for k in ("LUT", "CARRY", "BRAM", "DSP")}
    total["adder_bits"] = sum(int(w) * n for r in layers.values() for w, n in r["adders"].items())
    return {"clock_mhz": CLOCK_MHZ, "layers": layers, "total": total, "latency_cycles": latency,
            "initiation_interval_cycles": ii, "throughput_per_s": CLOCK_MHZ * 1e6 / ii}


def resources_md(res: dict) -> str:
    """resources.json as a Markdown table."""
    rows = ["# Verilog resources (analytical)", "",
            (f"Clock {res['clock_mhz']:g} MHz (stated, not timed): latency {res['latency_cycles']} cycles, "
            f"initiation interval {res['initiation_interval_cycles']} cycles, "
            f"{res['throughput_per_s']:.0f} inferences/s."), "",
            "| module | kind | PEs | adders (width: count) | comparators | multipliers | FF | ROM bits | cycles |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["layers"].items():
        adders = ", ".join(f"{w}b: {n}" for w, n in r["adders"].items()) or "-"
        rows.append(f"| {name} | {r['kind']} | {r['pe']} | {adders} | {r['comparators']} | {r['multipliers']} | "
                    f"{r['flip_flops']} | {r['rom_bits']} | {r['latency_cycles']} |")
    t = res["total"]
    rows.append(f"| total | | | {t['adder_bits']} adder bits | {t['comparators']} | {t['multipliers']} | "
                f"{t['flip_flops']} | {t['rom_bits']} | {res['latency_cycles']} |")
    return "\n".join(rows + _estimate_md(res)) + "\n"


def _estimate_md(res: dict) -> list[str]:
    """The iCE40 logic estimate per module (cost model: backends/verilog/lutmodel.py)."""
    rows = ["", "Estimated iCE40 logic (analytical cost model, compare with `--synth ice40`):", "",
            "| module | LUT4 | SB_CARRY | BRAM (4 kbit) | SB_MAC16 | FF |", "|---|---|---|---|---|---|"]
    for name, r in [*res["layers"].items(), ("total", {**res["total"]})]:
        e = r["estimate_ice40"]
        rows.append(f"| {name} | {e['LUT']} | {e['CARRY']} | {e['BRAM']} | {e['DSP']} | {r['flip_flops']} |")
    return rows
