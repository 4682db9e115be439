"""Benchmark: event-driven synapse + LIF (snn.event_linear) vs the dense path (BLAS matmul, bias add,
snn.lif's loop) on random spike trains, per input spike density: where is the crossover?

    python benchmarks/bench_snn_event.py [--repeat 7]

T = 32, batch 256, layers 64->32 (the digits MLP's hidden layer) and 256->256 and 1024->256. Both paths
run side by side, alternating, in one process; the table gives each one's median time and the ratio;
benchmarks/bench_snn_event.png plots time vs density. The pass snn-event's default max_density comes
from this crossover.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
LAYERS = ((64, 32), (256, 256), (1024, 256))


def paths(x, w, b, th):
    """The two implementations of one spiking layer on spikes x: (event, dense)."""
    from mpc.snn.event import event_linear
    from mpc.snn.kernels import snn_lif

    def event():
        return event_linear(x, w, b, th, 1.0, True, 0, 0.5)

    def dense():
        cur = np.matmul(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:2] + (-1,)) + b
        return snn_lif(cur, th, 1.0, True, 0, 0.5)
    return event, dense


def _median_ms(fn, repeat) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def measure(repeat: int) -> dict:
    """{(D, H): {density: (event ms, dense ms)}}, both paths alternating at each point."""
    rng = np.random.default_rng(0)
    res = {}
    for d, h in LAYERS:
        w = (rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32)
        b = np.zeros(h, np.float32)
        th = np.ones(1, np.float32)
        for p in DENSITIES:
            x = (rng.random((32, 256, d)) < p).astype(np.float32)
            event, dense = paths(x, w, b, th)
            assert np.array_equal(event(), dense()) or p > 0   # warm-up (both compiled before timing)
            pair = [(_median_ms(event, 1), _median_ms(dense, 1))]
            for _ in range(repeat):
                pair.append((_median_ms(event, 1), _median_ms(dense, 1)))
            arr = np.array(pair[1:])
            res.setdefault((d, h), {})[p] = (float(np.median(arr[:, 0])), float(np.median(arr[:, 1])))
    return res


def crossover(row: dict) -> float | None:
    """The highest measured density at which the event path is still faster (None: never)."""
    faster = [p for p, (e, dn) in row.items() if e < dn]
    return max(faster) if faster else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    res = measure(args.repeat)
    print(f"T = 32, batch 256, {os.cpu_count()} CPUs; median ms (event / dense = ratio)")
    print("| density | " + " | ".join(f"{d}->{h}" for d, h in LAYERS) + " |")
    print("|---|" + "---|" * len(LAYERS))
    for dens in DENSITIES:
        cells = [f"{res[k][dens][0]:.2f} / {res[k][dens][1]:.2f} = {res[k][dens][0] / res[k][dens][1]:.2f}"
                 for k in LAYERS]
        print(f"| {dens} | " + " | ".join(cells) + " |")
    for k in LAYERS:
        print(f"  {k[0]}->{k[1]}: event faster up to density {crossover(res[k])}")
    plot(res)
    return 0


def plot(res) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
    for i, (k, row) in enumerate(res.items()):
        ds = list(row)
        ax.loglog(ds, [row[p][0] for p in ds], "o-", color=f"C{i}", label=f"{k[0]}->{k[1]} event (snn.event_linear)")
        ax.loglog(ds, [row[p][1] for p in ds], "s--", color=f"C{i}", label=f"{k[0]}->{k[1]} dense (matmul + snn.lif)")
    ax.set_xlabel("input spike density")
    ax.set_ylabel("ms per layer call (T=32, batch 256)")
    ax.set_title("event-driven vs dense spiking layer")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "bench_snn_event.png", metadata={"Software": None})


if __name__ == "__main__":
    sys.exit(main())
