"""Benchmark: pruned fixed-point matmuls in the emitted C (compressed tables of non-zero weights).

The digits MLP, `--target float --prune magnitude --sparsity S --quantize 8 --emit c`, for S in
0 (dense), 0.5, 0.8, 0.9: `mpc verify --json` on the 540 held-out samples (accuracy, host C
mismatches against the emulator, Cortex-M4 firmware flash, multiplies per inference counted by the
emulator) and `mpc convert` (bytes of model.c's weight tables, counted from the emitted file).

    python benchmarks/bench_c_sparse.py     # prints a table, writes benchmarks/bench_c_sparse.png
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLP, TRAIN, TEST = (ROOT / "examples" / p for p in ("models/digits_mlp.onnx", "data/digits_train.npz",
                                                     "data/digits_test.npz"))
SPARSITY = (0.0, 0.5, 0.8, 0.9)
BYTES = {"int8_t": 1, "uint16_t": 2, "int16_t": 2, "int32_t": 4, "int64_t": 8}


def _flags(s: float) -> list[str]:
    prune = ["--prune", "magnitude", "--sparsity", str(s)] if s else []
    return ["--target", "float", *prune, "--quantize", "8", "--emit", "c", "--calib", str(TRAIN), "-q"]


def _mpc(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "mpc", *args], check=True, capture_output=True,
                          text=True).stdout


def table_bytes(c: str) -> int:
    """Bytes of every `static const` weight table in model.c (element size x declared length)."""
    return sum(BYTES[t] * int(n) for t, n in re.findall(r"static const (\w+) w_\w+\[(\d+)\]", c))


def measure(s: float) -> dict:
    """One sparsity: verify's figures and the weight-table bytes of the converted model."""
    r = json.loads(_mpc("verify", str(MLP), "--data", str(TEST), *_flags(s), "--json"))
    with tempfile.TemporaryDirectory() as tmp:
        _mpc("convert", str(MLP), *_flags(s), "-o", f"{tmp}/out")
        c = Path(f"{tmp}/out/c/model.c").read_text()
    acc = {k: v for k, v in r.items() if "acc" in k and isinstance(v, float)}
    return {"sparsity": s, "c_mismatches": r["c_mismatches"], "flash": r.get("c_cortex_m_flash_bytes"),
            "tables": table_bytes(c), "multiply": r["c_ops"]["ops_per_inference"]["multiply"],
            "sparse_layers": c.count("sparse */"), **acc}


def main() -> None:
    """Print the table and save the figure."""
    rows = [measure(s) for s in SPARSITY]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["sparsity"] for r in rows]
    for key in ("flash", "tables", "multiply"):
        if all(r[key] is not None for r in rows):
            ax.plot(xs, [r[key] for r in rows], marker="o", label=key)
    ax.set_xlabel("sparsity (magnitude pruning)")
    ax.set_ylabel("bytes / multiplies per inference")
    ax.set_title("digits MLP, int8 C: flash, weight tables, multiplies")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "bench_c_sparse.png", dpi=100)


if __name__ == "__main__":
    main()
