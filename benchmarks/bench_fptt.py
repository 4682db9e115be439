"""Benchmark: FPTT vs BPTT training of an LTC-SRNN (`mpc train-snn`): peak memory and time vs sequence length,
and accuracy at the same budget.

    OMP_NUM_THREADS=1 python benchmarks/bench_fptt.py [--hidden 32] [--limit 64] [--acc-limit 512] [--epochs 1]

Memory/time part: S-MNIST streamed with T = 28, 196, 784 steps (the 784 pixels in T equal chunks), the same
training samples and batch (32) for both methods, one epoch. Each run is a fresh `mpc train-snn`
process, so its peak-memory figure (growth of ru_maxrss during training) is its own. Accuracy part: one
run per method on digits-seq (64 steps) and on the S-MNIST and PS-MNIST subsets (784 steps), same
samples, epochs and seed. Prints a table, writes benchmarks/bench_fptt.json and benchmarks/bench_fptt.png.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (28, 196, 784)


def train(task: str, method: str, seq_len: int, hidden: int, limit: int, epochs: int, seed: int = 0) -> dict:
    """One `mpc train-snn` run in a fresh process; its report.json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "mpc", "train-snn", "--task", task, "--arch", f"ltc-srnn:{hidden}",
               "--method", method, "--seq-len", str(seq_len), "--limit", str(limit), "--epochs", str(epochs),
               "--seed", str(seed), "-o", str(out)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return json.loads((out / "report.json").read_text())


def memory_table(hidden: int, limit: int) -> list[dict]:
    """Peak memory growth and time per epoch per (method, T)."""
    rows = []
    for t in LENGTHS:
        for method in ("fptt", "bptt"):
            r = train("smnist", method, t, hidden, limit, 1)
            rows.append({"method": method, "T": t, "peak_mb": r["peak_memory_mb"],
                         "epoch_s": r["epochs"][-1]["epoch_s"], "step_ms": r["epochs"][-1]["step_ms"]})
            print(f"{method:5} T={t:4}  peak +{r['peak_memory_mb']:8.2f} MiB  epoch {r['epochs'][-1]['epoch_s']:8.2f} s",
                  flush=True)
    return rows


def accuracy_table(hidden: int, limit: int, epochs: int) -> list[dict]:
    """Test accuracy of each method at the same budget."""
    rows = []
    for task, t in (("digits-seq", 64), ("smnist", 784), ("psmnist", 784)):
        for method in ("fptt", "bptt"):
            r = train(task, method, t, hidden, limit, epochs)
            acc = [e["test_accuracy"] for e in r["epochs"]]
            rows.append({"task": task, "T": t, "method": method, "accuracy": acc[-1], "per_epoch": acc,
                         "train_samples": r["train_samples"], "test_samples": r["test_samples"]})
            print(f"{task:10} T={t:4} {method:5} accuracy {100 * acc[-1]:6.2f}%  per epoch {acc}", flush=True)
    return rows


def plot(mem: list[dict], acc: list[dict], path: Path) -> None:
    """Memory and time vs T (log-log), accuracy bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for method in ("fptt", "bptt"):
        rs = [r for r in mem if r["method"] == method]
        ax[0].plot([r["T"] for r in rs], [max(r["peak_mb"], 0.1) for r in rs], "o-", label=method)
        ax[1].plot([r["T"] for r in rs], [r["epoch_s"] for r in rs], "o-", label=method)
    for a, title in zip(ax[:2], ("peak autograd memory for one backward (MiB)", "time per epoch (s)")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xticks(LENGTHS, [str(t) for t in LENGTHS])
        a.minorticks_off()
        a.set_xlabel("sequence length T (S-MNIST)")
        a.set_title(title)
        a.legend()
    labels = [f"{r['task']}\n{r['method']}" for r in acc]
    ax[2].bar(range(len(acc)), [100 * r["accuracy"] for r in acc],
              color=["C0" if r["method"] == "fptt" else "C1" for r in acc])
    ax[2].set_xticks(range(len(acc)), labels, fontsize=7)
    ax[2].set_title("test accuracy (%), same budget")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    """Run both parts, print, save JSON and PNG."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--limit", type=int, default=64, help="training samples of the memory/time runs")
    p.add_argument("--acc-limit", type=int, default=512, help="training samples of the accuracy runs")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the accuracy runs")
    p.add_argument("--skip-accuracy", action="store_true")
    args = p.parse_args()
    mem = memory_table(args.hidden, args.limit)
    acc = [] if args.skip_accuracy else accuracy_table(args.hidden, args.acc_limit, args.epochs)
    out = ROOT / "benchmarks"
    (out / "bench_fptt.json").write_text(json.dumps({"args": vars(args), "memory": mem, "accuracy": acc},
                                                    indent=2) + "\n")
    plot(mem, acc, out / "bench_fptt.png")
    f = {r["T"]: r["peak_mb"] for r in mem if r["method"] == "fptt"}
    b = {r["T"]: r["peak_mb"] for r in mem if r["method"] == "bptt"}
    print(f"FPTT memory T=784 / T=28: {f[784] / max(f[28], 1e-9):.2f}x; BPTT: {b[784] / max(b[28], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
