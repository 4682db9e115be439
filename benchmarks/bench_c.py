"""Benchmark: the emitted fixed-point C against onnxruntime, on the shipped digits MLP and CNN.

For each model and configuration (float target int8, float target int16, MP target int16):
- `mpc verify --emit c --json` on the held-out data: accuracy (source, float converted, fixed point),
  mismatching output integers of the host C and of the Cortex-M4 run under qemu (32 samples),
  Cortex-M4 firmware flash and RAM;
- `mpc convert --emit c`: report.json section `c` (model.c sizes on host and Cortex-M4, operations
  per inference by kind);
- host inferences/s: the emitted model.c compiled with gcc -O2 and timed in C over the test set
  (batch 1, one thread, repeated), beside onnxruntime float32 with one thread at batch 1, measured
  in the same run (ratios measured side by side).

    python benchmarks/bench_c.py [--repeat 20]     # prints a table, writes benchmarks/bench_c.png
    python benchmarks/bench_c.py --ops-only       # only the operation counts of the emulator, on the test set
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "_cache" / "c"
MODELS = {"digits MLP": ("digits_mlp.onnx", "digits_train.npz", "digits_test.npz"),
          "digits CNN": ("digits_cnn.onnx", "digits_img_train.npz", "digits_img_test.npz")}
CONFIGS = {"float int8": ("float", "8"), "float int16": ("float", "16"), "MP int16": ("mp", "16")}

TIMER = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model.h"
static MPC_IN_T in[MPC_MAX_SAMPLES][MPC_IN_SIZE];
static MPC_OUT_T out[MPC_OUT_SIZE];
int main(int argc, char **argv)
{
    int n = 0, r, s, reps = argc > 1 ? atoi(argv[1]) : 10;
    long check = 0;
    struct timespec t0, t1;
    while (n < MPC_MAX_SAMPLES && fread(in[n], sizeof in[0][0], MPC_IN_SIZE, stdin) == MPC_IN_SIZE)
        n++;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (r = 0; r < reps; r++)
        for (s = 0; s < n; s++) {
            mpc_run(in[s], out);
            check += out[0];
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.1f %ld\n", (double)n * reps / ((t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec)), check);
    return 0;
}
"""


def mpc(*args: str) -> str:
    """Run the mpc CLI as a user would; returns stdout."""
    r = subprocess.run([sys.executable, "-m", "mpc", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if r.returncode:
        raise SystemExit(f"mpc {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def host_rate(cdir: Path, qin: np.ndarray, in_t: str, out_t: str, repeat: int) -> float:
    """Inferences/s of model.c (gcc -O2) over the quantized test inputs, timed inside the program."""
    src = TIMER.replace("MPC_IN_T", in_t).replace("MPC_OUT_T", out_t)
    (cdir / "bench_main.c").write_text(src.replace("MPC_MAX_SAMPLES", str(len(qin))))
    exe = cdir / "bench"
    subprocess.run(["gcc", "-std=c99", "-O2", "-o", str(exe), str(cdir / "bench_main.c"), str(cdir / "model.c")],
                   check=True)
    out = subprocess.run([str(exe), str(repeat)], input=np.ascontiguousarray(qin).tobytes(), capture_output=True,
                         check=True).stdout.decode().split()
    return float(out[0])


def ort_rate(model: Path, x: np.ndarray, repeat: int) -> float:
    """onnxruntime float32 inferences/s: one thread, batch 1, sequential execution."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rows = [x[i:i + 1] for i in range(len(x))]
    for r in rows[:20]:
        sess.run(None, {name: r})
    t0 = time.perf_counter()
    for _ in range(max(1, repeat // 4)):
        for r in rows:
            sess.run(None, {name: r})
    return len(rows) * max(1, repeat // 4) / (time.perf_counter() - t0)


def measure(name: str, config: str, repeat: int) -> dict:
    """One model x configuration: verify figures, report section c, host inferences/s."""
    from mpc.ir import parse
    onnx_file, train, test = MODELS[name]
    target, width = CONFIGS[config]
    model, calib, data = (str(ROOT / "examples" / d / f) for d, f in
                          (("models", onnx_file), ("data", train), ("data", test)))
    flags = ["--target", target, "--quantize", width, "--emit", "c", "--calib", calib, "-q"]
    v = json.loads(mpc("verify", model, "--data", data, "--json", *flags))
    out = CACHE / f"{onnx_file.split('.')[0]}_{target}{width}"
    mpc("convert", model, *flags, "-o", str(out), "--force")
    report = json.loads((out / "report.json").read_text())["sections"]["c"]
    from mpc.backends.c import render_c

    from mpc.data import Dataset
    from mpc.driver.verify_fx import emulator_io
    g = parse((out / "model.mpc").read_text(), dict(np.load(out / "weights.npz")))
    x = np.load(data)["input"]
    qin, _ = emulator_io(g, Dataset({g.inputs[0].name: x}, None, data))
    in_t, out_t = render_c(g)[3].split()
    return {"model": name, "config": config, "source": v["source_accuracy"], "float": v["float_converted_accuracy"],
            "fixed": v["converted_accuracy"], "c_mismatches": v["c_mismatches"],
            "m4_mismatches": v.get("c_cortex_m_mismatches"), "m4_flash": v.get("c_cortex_m_flash_bytes"),
            "m4_ram": v.get("c_cortex_m_ram_bytes"), "model_c_m4": report["sizes"]["cortex_m4"],
            "model_c_host": report["sizes"]["host"], "ops": report["ops_per_inference"],
            "c_per_s": host_rate(out / "c", qin, in_t, out_t, repeat)}


def plot(rows: list[dict], ort: dict[str, float], path: Path) -> None:
    """Bars of host inferences/s per model: each C configuration and onnxruntime (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(MODELS)
    labels = [*CONFIGS, "onnxruntime f32"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(labels)
    for j, lab in enumerate(labels):
        vals = [ort[n] if lab == "onnxruntime f32" else next(r["c_per_s"] for r in rows
                                                             if r["model"] == n and r["config"] == lab) for n in names]
        ax.bar(np.arange(len(names)) + j * width, vals, width, label=lab)
    ax.set_xticks(np.arange(len(names)) + width * (len(labels) - 1) / 2, names)
    ax.set_yscale("log")
    ax.set_ylabel("inferences / s (batch 1, one thread, host)")
    ax.set_title("emitted C (gcc -O2) vs onnxruntime float32")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def counted_rows() -> list[dict]:
    """Per model and configuration, the emulator's operations per inference (mean and max) over the test set."""
    from mpc.backends.c.resources import counted_ops

    from mpc.data import Dataset
    from mpc.ir import parse
    rows = []
    for name, (onnx_file, train, test) in MODELS.items():
        for config, (target, width) in CONFIGS.items():
            out = CACHE / f"{onnx_file.split('.')[0]}_{target}{width}"
            mpc("convert", str(ROOT / "examples" / "models" / onnx_file), "--target", target, "--quantize", width,
                "--calib", str(ROOT / "examples" / "data" / train), "-q", "-o", str(out), "--force")
            g = parse((out / "model.mpc").read_text(), dict(np.load(out / "weights.npz")))
            x = np.load(ROOT / "examples" / "data" / test)["input"]
            rows.append({"model": name, "config": config,
                         **counted_ops(g, Dataset({g.inputs[0].name: x}, None, test))})
    return rows


def print_counted(rows: list[dict]) -> None:
    """The table of counted operations: mean per inference (max over the samples in parentheses)."""
    print("| model | config | add | compare | shift | multiply | divide | MP layers' multiply + divide |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mean, top = r["ops_per_inference"], r["ops_per_inference_max"]
        cells = " | ".join(f"{mean[k]:.0f} ({top[k]})" if mean[k] != top[k] else f"{top[k]}"
                           for k in ("add", "compare", "shift", "multiply", "divide"))
        print(f"| {r['model']} | {r['config']} | {cells} | {r['mp_layer_multiplies_and_divides']} |")
    print(f"\n{rows[0]['ops_source']}" if rows else "")


def main() -> None:
    """Run every model x configuration, print the tables, save the PNG."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20, help="passes over the test set when timing")
    p.add_argument("--ops-only", action="store_true", help="only the emulator's operation counts (no timing)")
    args = p.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.ops_only:
        print_counted(counted_rows())
        return
    rows = [measure(n, c, args.repeat) for n in MODELS for c in CONFIGS]
    ort = {n: ort_rate(ROOT / "examples" / "models" / MODELS[n][0],
                       np.load(ROOT / "examples" / "data" / MODELS[n][2])["input"], args.repeat) for n in MODELS}
    print("| model | config | source | float converted | fixed point | C ≠ emu | M4 ≠ emu | M4 flash / RAM (B) "
          "| model.c M4 flash / RAM (B) | C inf/s | ORT inf/s | C / ORT |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m4 = r["model_c_m4"]
        print(f"| {r['model']} | {r['config']} | {100 * r['source']:.2f}% | {100 * r['float']:.2f}% | "
              f"{100 * r['fixed']:.2f}% | {r['c_mismatches']} | {r['m4_mismatches']} | {r['m4_flash']} / {r['m4_ram']} | "
              f"{m4.get('flash_bytes')} / {m4.get('ram_bytes')} | {r['c_per_s']:.0f} | {ort[r['model']]:.0f} | "
              f"{r['c_per_s'] / ort[r['model']]:.2f}x |")
    print("\n| model | config | add | compare | shift | multiply | divide |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        o = r["ops"]
        print(f"| {r['model']} | {r['config']} | {o['add']} | {o['compare']} | {o['shift']} | {o['multiply']} | "
              f"{o['divide']} |")
    plot(rows, ort, ROOT / "benchmarks" / "bench_c.png")
    print("\nwrote benchmarks/bench_c.png")


if __name__ == "__main__":
    main()
