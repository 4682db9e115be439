"""Benchmark: sweep wall time on the local executor, a process pool and Ray at 1 and 2 workers, the
per-point overhead of each executor, and a projection of a 1,000-point sweep on a 64-node cluster.

The sweep: `mpc sweep-gamma` on the digits MLP over γ = 0.5, 1, 2, 4, 8, 16 (six points, each a full
convert + calibrate + accuracy on 256 test digits), run through `mpc.driver.sweep.sweep` with each
executor, side by side in one run, `--repeats` times. The overhead: 24 trivial tasks (`builtins:len` of
the payload, no work) per executor at 1 worker, wall time / points. Ray's cluster start is timed apart.

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py [--repeats 2]   # table; benchmarks/bench_scale.png
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

from mpc.driver.compiler import Settings
from mpc.driver.executor import ExecutorSpec, Point, run_points
from mpc.driver.sweep import sweep

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TEST = ROOT / "examples" / "data" / "digits_test.npz"
GAMMAS = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
CONFIGS = [("local", 1), ("process", 1), ("process", 2), ("ray", 1), ("ray", 2)]
TRIVIAL = 24


def _ray_start(workers: int) -> float:
    """Start a local Ray cluster of `workers` CPUs; seconds it took."""
    import ray
    if ray.is_initialized():
        ray.shutdown()
    t = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    return time.perf_counter() - t


def _sweep_seconds(spec: ExecutorSpec, data: Path) -> tuple[float, list]:
    settings = Settings(target="mp", calib=str(data), quiet=True)
    t = time.perf_counter()
    result = sweep(str(MLP), settings, str(data), GAMMAS, spec)
    return time.perf_counter() - t, [r["accuracy"] for r in result["rows"]]


def _overhead(spec: ExecutorSpec) -> float:
    points = [Point(f"p{i}", {"i": i}) for i in range(TRIVIAL)]
    t = time.perf_counter()
    run_points("builtins:len", points, spec)
    return (time.perf_counter() - t) / TRIVIAL


def measure(repeats: int, data: Path) -> dict:
    """Sweep seconds per config and repeat, per-point overhead per executor, Ray start-up seconds."""
    import ray
    sweeps = {c: [] for c in CONFIGS}
    overhead = {k: [] for k in ("local", "process", "ray")}
    starts, accuracies = [], set()
    for _ in range(repeats):
        for kind, w in CONFIGS:
            if kind == "ray":
                starts.append(_ray_start(w))
            seconds, acc = _sweep_seconds(ExecutorSpec(kind, w), data)
            sweeps[(kind, w)].append(seconds)
            accuracies.add(tuple(acc))
            if w == 1:
                overhead[kind].append(_overhead(ExecutorSpec(kind, 1)))
            if kind == "ray":
                ray.shutdown()
    return {"sweeps": sweeps, "overhead": overhead, "ray_start": starts, "identical": len(accuracies) == 1}


def project(m: dict, points: int = 1000, nodes: int = 64) -> dict:
    """A 1,000-point sweep on 64 one-worker nodes, from the measured costs: Ray start-up, then
    ceil(points / nodes) rounds of (one point's compute + Ray's per-point overhead); the driver's
    serial dispatch (points x overhead) as a lower bound when it dominates."""
    compute = statistics.median(m["sweeps"][("local", 1)]) / len(GAMMAS)
    over = statistics.median(m["overhead"]["ray"])
    start = statistics.median(m["ray_start"])
    rounds = math.ceil(points / nodes)
    wall = start + max(rounds * (compute + over), points * over)
    return {"compute_per_point": compute, "ray_overhead": over, "ray_start": start, "rounds": rounds,
            "wall": wall, "serial": points * compute, "speedup": points * compute / wall}


def plot(m: dict, path: Path) -> None:
    """Bars: sweep wall time per executor and worker count (median, with the range of repeats)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{k}\n{w} worker{'s' if w > 1 else ''}" for k, w in CONFIGS]
    med = [statistics.median(m["sweeps"][c]) for c in CONFIGS]
    lo = [med[i] - min(m["sweeps"][c]) for i, c in enumerate(CONFIGS)]
    hi = [max(m["sweeps"][c]) - med[i] for i, c in enumerate(CONFIGS)]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.bar(range(len(CONFIGS)), med, yerr=[lo, hi], capsize=4, color=["C0", "C1", "C1", "C2", "C2"])
    ax.set_xticks(range(len(CONFIGS)), labels)
    ax.set_ylabel("sweep wall time (s)")
    ax.set_title(f"sweep-gamma, digits MLP, {len(GAMMAS)} points (2 shared cores)")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    """Measure, print the tables and the projection, save the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d.npz"
        with np.load(TEST) as f:
            np.savez(data, input=f["input"][:256], labels=f["labels"][:256])
        m = measure(args.repeats, data)
    print("| executor | workers | sweep wall (s), each repeat | median |")
    print("|---|---|---|---|")
    for c in CONFIGS:
        runs = ", ".join(f"{s:.1f}" for s in m["sweeps"][c])
        print(f"| {c[0]} | {c[1]} | {runs} | {statistics.median(m['sweeps'][c]):.1f} |")
    print("\n| executor | per-point overhead (ms), each repeat |")
    print("|---|---|")
    for k, v in m["overhead"].items():
        print(f"| {k} | {', '.join(f'{1000 * s:.1f}' for s in v)} |")
    print(f"\nRay local cluster start (s): {', '.join(f'{s:.1f}' for s in m['ray_start'])}")
    print(f"accuracies identical across executors and repeats: {m['identical']}")
    pr = project(m)
    print(f"\nprojection, 1000 points on 64 nodes: compute {pr['compute_per_point']:.2f} s/point, Ray overhead "
          f"{1000 * pr['ray_overhead']:.1f} ms/point, start {pr['ray_start']:.1f} s, {pr['rounds']} rounds -> "
          f"{pr['wall']:.0f} s (one process: {pr['serial']:.0f} s, {pr['speedup']:.0f}x)")
    plot(m, Path(__file__).with_suffix(".png"))


if __name__ == "__main__":
    main()
