"""Benchmark: the fused spiking chain (snn.chain) with dense weight rows vs compressed rows (zero weights
skipped) on the digits MLP's spiking synapses (64->32, 32->10), magnitude-pruned to a range of sparsities.

    python benchmarks/bench_snn_chain.py [--repeat 15]

Speed only: the pruned weights are not retrained (both variants compute the same values, checked here).
T = 32, batch 256; the two variants alternate round by round; prints a markdown table (median and best ms
per call, compressed / dense ratio of the medians) and writes benchmarks/bench_snn_chain.png.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"


def _chain_inputs():
    """The digits MLP converted for --target lif and lowered: the chain's input current and parameters."""
    from mpc.driver.compiler import Settings, compile_model
    from mpc.ir import run
    from mpc.passmanager import run_pipeline
    c = compile_model(str(ROOT / "examples" / "models" / "digits_mlp.onnx"),
                      Settings(target="lif", quiet=True, calib=str(DATA / "digits_train.npz")))
    g = c.graph
    run_pipeline(g, "snn-chain")
    chain = next(op for op in g.ops if op.kind == "snn.chain")
    with np.load(DATA / "digits_test.npz") as f:
        x = np.concatenate([f["input"], f["input"]])[:256]
    g.outputs = [chain.operands[0]]
    current = run(g, {"input": x})[chain.operands[0].name]
    return current, [np.array(g.weights[v.name]) for v in chain.operands[1:]], chain.attrs


def _prune(w, sparsity):
    if sparsity == 0:
        return w
    return np.where(np.abs(w) > np.quantile(np.abs(w), sparsity), w, 0).astype(w.dtype)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    from mpc.snn.chain import snn_chain
    x, params, a = _chain_inputs()
    rows = []
    print(f"load average {os.getloadavg()[0]:.1f}, threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    print("| sparsity | dense rows ms (median / best) | compressed rows ms (median / best) | compressed / dense |")
    print("|---|---|---|---|")
    for s in (0.0, 0.5, 0.8, 0.9, 0.95):
        ps = [_prune(w, s) if w.ndim == 2 else w for w in params]
        fns = {sp: (lambda sp=sp, ps=ps: snn_chain(x, ps, a.timesteps, a.beta, a.soft, a.refractory, a.v0, (sp,) * 2, 1.0))
               for sp in (False, True)}
        assert np.array_equal(fns[False](), fns[True]())   # same additions in the same order
        t = {sp: [] for sp in fns}
        for _ in range(args.repeat):
            for sp, fn in fns.items():
                t[sp].append(1e3 * _timed(fn))
        med = {sp: float(np.median(v)) for sp, v in t.items()}
        rows.append((s, med[False], med[True]))
        print(f"| {s:.2f} | {med[False]:.2f} / {min(t[False]):.2f} | {med[True]:.2f} / {min(t[True]):.2f} | "
              f"{med[True] / med[False]:.2f} |")
    _plot(rows)
    return 0


def _plot(rows) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    s = [r[0] for r in rows]
    ax.plot(s, [r[1] for r in rows], "o-", label="dense rows")
    ax.plot(s, [r[2] for r in rows], "s--", label="compressed rows (zeros skipped)")
    ax.set_xlabel("weight sparsity of the spiking synapses")
    ax.set_ylabel("ms per batch of 256 (median)")
    ax.set_title("snn.chain, digits MLP, T=32")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "bench_snn_chain.png", metadata={"Software": None})


if __name__ == "__main__":
    raise SystemExit(main())
