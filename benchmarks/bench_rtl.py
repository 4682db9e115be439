"""Benchmark: FPGA resources from one open flow (Yosys `synth_xilinx`, the same script for every design).

Designs: a 64x32 dense layer (8-bit seeded random weights, 8-bit inputs), the digits MLP
(examples/models/digits_mlp.onnx, 64-64-32-10, weights and activations quantized to 8 bits), and a 256x32
MP kernel set against Nair et al. (IEEE TVLSI 2022: about 9k LUT, 9k FF, 0 DSP, published, not measured
here).  Rows:
  (a) mpc MP and (b) mpc MAC: `mpc convert MODEL --target mp|float --quantize 8 --emit verilog
      --parallel P -o OUT` at P = 1, 4, 16 and fully parallel (P = the widest layer's neuron count), each
      P only where it divides every layer's neuron count (the backend refuses others; the digits MLP's
      64, 32, 10 neurons allow P = 1 only of these), synthesizing OUT/rtl/*.v with top module `mpc_top`;
      cycles per inference: `latency_cycles` of OUT/resources.json (input handshake to output valid).
  (c) da4ml (optional `bench` extra): its fully parallel adder-graph RTL for the same quantized weights
      (combinational: one inference per cycle, no registers).
Each row reports LUT, FF, CARRY, DSP (Vivado-style keys from `mpc.eda`), Yosys wall time and cycles;
`--families xilinx,ice40` adds `synth_ice40 -dsp` rows (iCE40: LUT4, SB_CARRY, SB_MAC16).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_rtl.py [--time-limit S] [--designs dense64x32,...]
        prints a table, writes benchmarks/bench_rtl.json and benchmarks/bench_rtl.png
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mpc.eda import family_options, synth

ROOT = Path(__file__).resolve().parents[1]
MLP, TRAIN = ROOT / "examples" / "models" / "digits_mlp.onnx", ROOT / "examples" / "data" / "digits_train.npz"
PARALLEL = (1, 4, 16, "full")
DESIGNS = ("dense64x32", "digits", "mp256x32")
NAIR = {"LUT": 9000, "FF": 9000, "DSP": 0}          # published figures (Nair et al. 2022), not measured
KEYS = ("LUT", "FF", "CARRY", "DSP")


def dense_weights(d: int, h: int, seed: int = 0) -> np.ndarray:
    """Seeded random 8-bit signed integer weights, [d, h]."""
    return np.random.default_rng(seed).integers(-128, 128, size=(d, h)).astype(np.int64)


def dense_onnx(path: Path, w_int: np.ndarray) -> None:
    """A one-layer ONNX model y = x @ (w_int / 128), input named `input` of shape [N, d]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    d, h = w_int.shape
    w = numpy_helper.from_array((w_int / 128.0).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["y"], name="dense")], "dense",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", h])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def dense_calib(path: Path, d: int) -> None:
    """Seeded calibration inputs in [-1, 1) for the dense layer."""
    x = np.random.default_rng(1).uniform(-1, 1, size=(256, d)).astype(np.float32)
    np.savez(path, input=x)


def verilog_unavailable() -> str | None:
    """Why `mpc convert --emit verilog --parallel P` cannot run here, or None when it can."""
    from mpc.backends import BACKENDS
    if "verilog" not in BACKENDS:
        return "this mpc has no 'verilog' backend (--emit verilog arrives with the Verilog backend)"
    helptext = subprocess.run([sys.executable, "-m", "mpc", "convert", "--help"], check=True, capture_output=True,
                              text=True).stdout
    return None if "--parallel" in helptext else "`mpc convert` has no --parallel flag"


def mpc_rtl(model: Path, calib: Path, target: str, p: int, out: Path) -> tuple[list[Path], int | None]:
    """Verilog sources and cycles per inference from `mpc convert ... --emit verilog --parallel P`."""
    subprocess.run([sys.executable, "-m", "mpc", "convert", str(model), "--target", target, "--quantize", "8",
                    "--calib", str(calib), "--emit", "verilog", "--parallel", str(p), "-o", str(out), "-q"],
                   check=True, capture_output=True, text=True)
    cycles = json.loads((out / "resources.json").read_text())["latency_cycles"]   # input to output valid
    return sorted((out / "rtl").glob("*.v")), cycles


def da4ml_rtl(layers, out: Path, in_kif=(1, 0, 7)) -> list[Path]:
    """da4ml's fully parallel RTL for dense layers [(w float [d, h], b or None, relu_kif or None)]."""
    from da4ml.codegen import RTLModel
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
    from da4ml.trace.ops import quantize
    inp = FixedVariableArrayInput((layers[0][0].shape[0],), hwconf=HWConfig(1, -1, -1))
    x = quantize(inp, *in_kif)
    for w, b, act in layers:
        x = x @ w if b is None else x @ w + b
        x = x if act is None else quantize(x.relu(), *act)
    RTLModel(comb_trace(inp, x), "model", out, flavor="verilog", print_latency=False).write()
    used = {line.split()[3] for line in (out / "src" / "model.v").read_text().splitlines()
            if line.strip().startswith("wire [") and len(line.split()) > 4 and "(" in line}
    return [out / "src" / "model.v", *sorted(p for p in (out / "src" / "static").glob("*.v") if p.stem in used)]


def quantize_weights(w: np.ndarray, bits: int = 8) -> np.ndarray:
    """Round to `bits`-bit signed fixed point with the most fractional bits that hold max |w| (power-of-two scale)."""
    frac = bits - 1 - int(np.ceil(np.log2(np.abs(w).max())))
    return np.clip(np.round(w * 2.0 ** frac), -2 ** (bits - 1), 2 ** (bits - 1) - 1) / 2.0 ** frac


def digits_layers(bits: int = 8) -> list:
    """The digits MLP as da4ml layers: 8-bit weights, biases on the weight grid, hidden activations
    re-quantized to 8 unsigned bits with integer bits set by the largest activation on the training set."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(MLP))
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    x = np.load(TRAIN)["input"].astype(np.float64)
    layers = []
    for i, node in enumerate(gemms):
        w = quantize_weights(inits[node.input[1]].T, bits)          # Gemm transB=1: stored [out, in]
        b = np.round(inits[node.input[2]] * 2.0 ** bits) / 2.0 ** bits
        x = x @ w + b
        if i == len(gemms) - 1:
            layers.append((w, b, None))
            break
        x = np.maximum(x, 0)
        ibits = max(0, int(np.ceil(np.log2(x.max() + 1e-12))))
        layers.append((w, b, (0, ibits, bits - ibits)))
    return layers


def measure(name: str, kind: str, p, sources, cycles, args, work: Path) -> list[dict]:
    """One row per FPGA family: Yosys (default DSP use) on the sources, counts and wall time."""
    top = "model" if kind == "da4ml" else "mpc_top"
    rows = []
    for family in args.families.split(","):
        r = synth(sources, top, work / family, family=family, options=family_options(family, True),
                  time_limit_s=args.time_limit)
        rows.append({"design": name, "kind": kind, "P": p, "family": family, "status": r.status,
                     "yosys_s": round(r.wall_s, 1), "cycles": cycles, **{k: r.summary.get(k) for k in KEYS}})
        print(_fmt(rows[-1]), flush=True)
    return rows


COLUMNS = ("design", "kind", "P", "family", *KEYS, "cycles", "yosys_s", "status")


def _fmt(row: dict) -> str:
    cols = COLUMNS
    return "| " + " | ".join("–" if row.get(c) is None else str(row.get(c)) for c in cols) + " |"


def _models(tmp: Path) -> dict:
    """design -> (ONNX model, calibration data, neurons per layer: --parallel P must divide each)."""
    models = {"digits": (MLP, TRAIN, (64, 32, 10))}
    for name, d in (("dense64x32", 64), ("mp256x32", 256)):
        dense_onnx(tmp / f"{name}.onnx", dense_weights(d, 32))
        dense_calib(tmp / f"{name}.npz", d)
        models[name] = (tmp / f"{name}.onnx", tmp / f"{name}.npz", (32,))
    return models


def parallel_values(widths: tuple[int, ...], wanted) -> list[int]:
    """The wanted P (1, 4, 16, "full" = the widest layer) that divide every layer's neuron count."""
    ps = [max(widths) if p == "full" else int(p) for p in wanted]
    return [p for p in dict.fromkeys(ps) if all(w % p == 0 for w in widths)]


def mpc_rows(design: str, model, calib, widths: tuple[int, ...], args, tmp: Path) -> list[dict]:
    """mpc MP (and MAC, except for the MP kernel) at every P that the layers allow."""
    rows = []
    kinds = [(k, t) for k, t in (("mp", "mp"), ("mac", "float")) if k in args.kinds.split(",")]
    kinds = kinds if design != "mp256x32" else [k for k in kinds if k[0] == "mp"]
    for kind, target in kinds:
        for p in parallel_values(widths, args.parallel.split(",")):
            out = tmp / f"{design}-{kind}-{p}"
            sources, cycles = mpc_rtl(model, calib, target, p, out)
            rows += measure(design, f"mpc {kind}", p, sources, cycles, args, out / "yosys")
    return rows


def da4ml_rows(design: str, args, tmp: Path) -> list[dict]:
    """da4ml's fully parallel RTL for the same weights (the 64x32 layer and the digits MLP)."""
    if design == "dense64x32":
        layers = [(dense_weights(64, 32) / 128.0, None, None)]
    elif design == "digits":
        layers = digits_layers()
    else:
        return []
    out = tmp / f"{design}-da4ml"
    in_kif = (0, 1, 7) if design == "digits" else (1, 0, 7)     # digits pixels lie in [0, 1]
    sources = da4ml_rtl(layers, out, in_kif)
    return measure(design, "da4ml", "full", sources, 1, args, out / "yosys")


def plot(rows: list[dict], path: Path) -> None:
    """LUT and FF per measured row (log scale), with Nair et al.'s published 256x32 figures as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    done = [r for r in rows if r["status"] == "ok"]
    labels = [f"{r['design']}\n{r['kind']} P={r['P']}\n{r['family']}" for r in done]
    xs = np.arange(len(done))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(done) + 2), 4.5))
    for i, key in enumerate(KEYS):
        values = [r[key] or 0 for r in done]
        bars = ax.bar(xs + (i - 1.5) * 0.2, [v if v > 0 else np.nan for v in values], 0.2, label=key)
        for bar, x, v in zip(bars, xs + (i - 1.5) * 0.2, values):      # a zero has no bar on a log axis
            ax.text(x, v if v > 0 else 1, str(v), ha="center", va="bottom", fontsize=7)
    ax.axhline(NAIR["LUT"], color="grey", ls="--", lw=1, label="Nair et al. 256x32 MP: ~9k LUT (published)")
    ax.set_yscale("log")
    ax.set_ylim(0.8, 3 * max(NAIR["LUT"], *(r[k] or 0 for r in done for k in KEYS)))
    ax.set_xlim(-0.6, len(done) - 0.4)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("cells (Yosys synth_<family>)")
    ax.set_title("FPGA resources, one Yosys flow for every design")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    """Measure every row that can run here, print the table, save JSON and PNG."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=1800, help="seconds per Yosys run (default 1800)")
    ap.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated subset of {DESIGNS}")
    ap.add_argument("--families", default="xilinx",
                    help="comma-separated Yosys targets: xilinx (synth_xilinx), ice40 (synth_ice40 -dsp)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "bench_rtl")
    ap.add_argument("--parallel", default=",".join(map(str, PARALLEL)), help="mpc rows: P values (full = widest layer)")
    ap.add_argument("--kinds", default="mp,mac", help="mpc rows: mp and/or mac")
    ap.add_argument("--keep", type=Path, action="append", default=[],
                    help="earlier bench_rtl.json files whose rows are kept (not re-synthesized; e.g. da4ml's)")
    args = ap.parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    no_verilog = verilog_unavailable()
    try:
        import da4ml  # noqa: F401
        no_da4ml = None
    except ImportError:
        no_da4ml = "da4ml is not installed (pip install '.[bench]')"
    for what, why in (("mpc MP/MAC rows", no_verilog), ("da4ml rows", no_da4ml)):
        if why:
            print(f"skipping {what}: {why}")
    print(_fmt({c: c for c in COLUMNS}))
    print("|---" * len(COLUMNS) + "|")
    rows, skipped = kept_rows(args.keep), {"mpc": no_verilog, "da4ml": no_da4ml}
    skipped["kept_from_earlier_runs"] = len(rows)      # rows not synthesized by this run (same flow)
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(Path(tmp))
        for design in designs:
            if not no_verilog:
                rows += mpc_rows(design, *models[design], args, Path(tmp))
            if not no_da4ml and not any(r["design"] == design and r["kind"] == "da4ml" for r in rows):
                rows += da4ml_rows(design, args, Path(tmp))
            save(rows, skipped, args.out)          # after every design: a long run keeps what it measured
    save(rows, skipped, args.out)
    print(f"reference (published, not measured): Nair et al. 256x32 MP kernel machine ~{NAIR['LUT']} LUT, "
          f"~{NAIR['FF']} FF, {NAIR['DSP']} DSP")


def kept_rows(paths) -> list[dict]:
    """Rows of earlier runs (same script, same flow), printed again so the table is whole."""
    rows = [r for path in paths for r in json.loads(Path(path).read_text())["rows"]]
    for r in rows:
        print(_fmt(r) + " (kept from an earlier run)")
    return rows


def save(rows: list[dict], skipped: dict, out: Path) -> None:
    """The rows as JSON (with why rows were skipped) and the plot."""
    out.with_suffix(".json").write_text(json.dumps({"skipped": skipped, "rows": rows}, indent=1) + "\n")
    if any(r["status"] == "ok" for r in rows):      # a run whose rows all timed out has nothing to plot
        plot(rows, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
