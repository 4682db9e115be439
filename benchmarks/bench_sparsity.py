"""Benchmark: accuracy vs sparsity of the digits MLP (post-training LBI, magnitude, LBI + AdaBreg;
float, mp and lif targets; SynOps of the lif rows) and the NumPy backend's CSR speed-up over dense layers.

Accuracy: held-out digits (examples/data/digits_test.npz), masks fit on the first 512 training
samples, every model run by mpc's interpreter. Sparsity = removed fraction of the source's synapse
weights (after `fuse`, dead neurons count as removed). Methods: `magnitude` (plain per-layer
|w| masking, torch.nn.utils.prune's baseline), `magnitude+refit` (the same masks, kept weights refit
like LBI's), `lbi` (lbi-prune's default), `lbi+adabreg` (lbi-prune, then `mpc.optim.AdaBreg` fine-tuning
for a few epochs on the training split, optionally distilling from the dense model, with a cosine lr
decay and the epoch picked on a held-out part of train; its final sparsity is what AdaBreg leaves; on
the lif target through the surrogate-gradient loop). Speed: x @ W for
a 1024x1024 layer, batch 256, dense np.matmul (BLAS) vs model.py's CSR kernel; the median of `--repeat`.

    python benchmarks/bench_sparsity.py [--repeat 20] [--out benchmarks/bench_sparsity.png] [--no-mp] [--no-lif]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mpc.data import Dataset, load_data
from mpc.frontend import load_onnx
from mpc.ir import run
from mpc.passmanager import PassContext, run_pipeline

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples/models/digits_mlp.onnx"
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
MP_SPARSITIES = (0.5, 0.8, 0.9)
TAIL = {"float": "", "mp": ",mp-rewrite,mp-calibrate,dce", "lif": ",lower-lif,dce"}
LIF_SPARSITIES = (0.5, 0.8, 0.9)


def _data():
    loaded = load_onnx(str(MODEL))
    train = load_data(str(ROOT / "examples/data/digits_train.npz"), loaded.graph, loaded.input_names)
    test = load_data(str(ROOT / "examples/data/digits_test.npz"), loaded.graph, loaded.input_names)
    calib = Dataset({k: v[:512] for k, v in train.feeds.items()}, None, "calib")
    return train, test, calib


def _weights(graph) -> int:
    return sum(int(np.count_nonzero(graph.weights[op.operands[1].name])) for op in graph.ops
               if op.kind in ("nn.matmul", "mp.dot") and op.operands[1].is_weight)


def _accuracy(graph, test) -> float:
    logits = next(iter(run(graph, test.feeds).values()))
    return float(np.mean(logits.argmax(1) == test.labels))


def convert(stage: str, target: str, calib):
    """The digits MLP through canonicalize[,stage,fuse,dce] and the target's tail, in memory."""
    graph = load_onnx(str(MODEL)).graph
    pipeline = "canonicalize" + (f",{stage},fuse,dce" if stage else "") + TAIL[target]
    run_pipeline(graph, pipeline, PassContext(dataset=calib))
    return graph


def accuracy_table(target: str, sparsities, calib, test, dense: int) -> list[dict]:
    """One row per (method, sparsity)."""
    rows = []
    methods = {"lbi": "method=lbi", "magnitude": "method=magnitude,refit=false",
               "magnitude+refit": "method=magnitude,refit=true"}
    for s in sparsities:
        for name, opt in methods.items():
            if target == "mp" and name == "magnitude+refit":
                continue
            g = convert(f"lbi-prune{{{opt},sparsity={s}}}", target, calib)
            rows.append({"target": target, "method": name, "requested": s,
                         "sparsity": 1 - _weights(g) / dense, "accuracy": _accuracy(g, test)}
                        | (_synops(g, test) if target == "lif" else {}))
    return rows


def _synops(graph, test) -> dict:
    """lif target: SynOps per inference on the test set (spikes x non-zero fan-out; mpc.snn.report)."""
    from mpc.snn.report import spiking_report
    return {"synops": spiking_report(graph, load_onnx(str(MODEL)).graph, test)["cost"]["synops"]}


def adabreg_rows(target: str, sparsities, calib, train, test, dense: int, lam: float, epochs: int,
                 lr: float = 1e-3, distill: float = 0.0, schedule: str = "constant", val_fraction: float = 0.0,
                 lif_lr: float = 1e-3) -> list[dict]:
    """lbi-prune at each sparsity, then AdaBreg fine-tuning (lif: through the surrogate-gradient loop)."""
    from mpc.train.bregman import finetune_bregman
    from mpc.train.spiking import finetune_snn
    teacher = next(iter(run(convert("", "float", calib), train.feeds).values())) if distill else None
    rows = []
    for s in sparsities:
        g = convert(f"lbi-prune{{sparsity={s}}}", target, calib)
        if target == "lif":   # validation split and schedule are the float loop's; lif trains on all of train
            res = finetune_snn(g, train, epochs, lif_lr, 64, 0, True, teacher, distill, optimizer="adabreg", lam=lam)
        else:
            res = finetune_bregman(g, train, "adabreg", lam, epochs, lr, 64, teacher=teacher, distill=distill,
                                   schedule=schedule, val_fraction=val_fraction)
        run_pipeline(g, "fuse,dce", PassContext())
        rows.append({"target": target, "method": "lbi+adabreg", "requested": s,
                     "sparsity": 1 - _weights(g) / dense, "accuracy": _accuracy(g, test),
                     "active": res.history[-1]["active ratio"]} | (_synops(g, test) if target == "lif" else {}))
    return rows


def speed(repeat: int) -> list[dict]:
    """Dense BLAS vs CSR kernel on a 1024x1024 layer at 50/80/95% sparsity."""
    from mpc.sparse.kernels import csr_from_dense, csr_matmul
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    rows = []
    for s in (0.5, 0.8, 0.95):
        w = (rng.standard_normal((1024, 1024)) * (rng.random((1024, 1024)) >= s)).astype(np.float32)
        csr = csr_from_dense(w)
        csr_matmul(x, *csr)                                    # compile once
        np.testing.assert_allclose(csr_matmul(x, *csr), x @ w, rtol=1e-3, atol=1e-3)
        t = {}
        for name, fn in (("dense", lambda w=w: x @ w), ("csr", lambda csr=csr: csr_matmul(x, *csr))):
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            t[name] = float(np.median(times))
        rows.append({"sparsity": s, "dense_ms": 1e3 * t["dense"], "csr_ms": 1e3 * t["csr"],
                     "speedup": t["dense"] / t["csr"]})
    return rows


def plot(acc: list[dict], base: dict, spd: list[dict], out: Path) -> None:
    """Accuracy vs sparsity (float, mp) and CSR speed-up bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    for ax, target in zip(axes[:3], ("float", "mp", "lif")):
        for method in sorted({r["method"] for r in acc if r["target"] == target}):
            pts = sorted((r["sparsity"], r["accuracy"]) for r in acc if r["target"] == target and r["method"] == method)
            ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts], "o-", label=method)
        if target in base:
            ax.axhline(100 * base[target], color="gray", ls="--", label=f"dense {target}")
            ax.axhline(100 * base[target] - 0.5, color="gray", ls=":", label="dense - 0.5 pt")
        ax.set(title=f"digits MLP, target {target}", xlabel="sparsity (% of synapse weights removed)",
               ylabel="test accuracy (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax = axes[3]
    ax.bar([f"{int(100 * r['sparsity'])}%" for r in spd], [r["speedup"] for r in spd])
    ax.axhline(1.0, color="gray", ls="--")
    ax.set(title="CSR kernel vs dense BLAS, 1024x1024, batch 256", xlabel="sparsity", ylabel="speed-up (x)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    """Run everything, print the tables, save the plot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lam", type=float, default=0.1, help="AdaBreg λ")
    p.add_argument("--adabreg-lr", type=float, default=1e-3, help="AdaBreg learning rate")
    p.add_argument("--adabreg-start", default="0.8,0.9", help="float: LBI sparsities AdaBreg starts from")
    p.add_argument("--distill", type=float, default=0.0, help="AdaBreg: weight of distillation from the dense model")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant", help="AdaBreg lr schedule")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="AdaBreg (float, mp): held-out part of train picking the epoch written")
    p.add_argument("--lif-start", type=float, default=0.8, help="lif: LBI sparsity AdaBreg starts from")
    p.add_argument("--lif-lam", type=float, default=30.0, help="lif: AdaBreg λ")
    p.add_argument("--lif-lr", type=float, default=3e-3, help="lif: AdaBreg learning rate")
    p.add_argument("--lif-epochs", type=int, default=10, help="lif: AdaBreg epochs")
    p.add_argument("--no-mp", action="store_true")
    p.add_argument("--no-lif", action="store_true", help="skip the spiking (lif) rows")
    p.add_argument("--out", default=str(ROOT / "benchmarks/bench_sparsity.png"))
    args = p.parse_args()
    train, test, calib = _data()
    targets = ("float",) if args.no_mp else ("float", "mp")
    targets += () if args.no_lif else ("lif",)
    base = {}
    acc = []
    for target in targets:
        g = convert("", target, calib)
        dense = _weights(g)
        base[target] = _accuracy(g, test)
        if target == "lif":   # AdaBreg through the surrogate-gradient loop, from LBI at --lif-start
            base_synops = _synops(g, test)["synops"]
            acc += accuracy_table(target, LIF_SPARSITIES, calib, test, dense)
            acc += adabreg_rows(target, (args.lif_start,), calib, train, test, dense, args.lif_lam, args.lif_epochs,
                                distill=args.distill, lif_lr=args.lif_lr)
            continue
        acc += accuracy_table(target, SPARSITIES if target == "float" else MP_SPARSITIES, calib, test, dense)
        starts = tuple(float(s) for s in args.adabreg_start.split(","))
        acc += adabreg_rows(target, starts if target == "float" else (0.9,), calib, train, test, dense,
                            args.lam, args.epochs, args.adabreg_lr, args.distill, args.schedule, args.val_fraction)
    print("| target | method | requested | sparsity | accuracy | drop (pt) |\n|---|---|---|---|---|---|")
    for r in acc:
        print(f"| {r['target']} | {r['method']} | {r['requested']:.2f} | {100 * r['sparsity']:.1f}% | "
              f"{100 * r['accuracy']:.2f}% | {100 * (base[r['target']] - r['accuracy']):+.2f} |")
    print("dense: " + ", ".join(f"{t} {100 * a:.2f}%" for t, a in base.items()))
    lif = [r for r in acc if "synops" in r]
    if lif:
        print(f"\n| lif method | sparsity | SynOps/inference | vs dense lif ({base_synops:.0f}) |\n|---|---|---|---|")
    for r in lif:
        print(f"| {r['method']} | {100 * r['sparsity']:.1f}% | {r['synops']:.0f} | "
              f"{r['synops'] / base_synops:.1%} |")
    spd = speed(args.repeat)
    print("\n| sparsity | dense BLAS (ms) | CSR (ms) | speed-up |\n|---|---|---|---|")
    for r in spd:
        print(f"| {int(100 * r['sparsity'])}% | {r['dense_ms']:.2f} | {r['csr_ms']:.2f} | {r['speedup']:.2f}x |")
    plot(acc, base, spd, Path(args.out))
    print(f"\nplot: {args.out}")


if __name__ == "__main__":
    main()
