"""Benchmark: the fused MP kernel against a float32 matmul of the same shape, one thread each, side by side.

One layer, batch 128, D = 784, h = 1000 (x ~ U(0, 1), W ~ U(-1, 1)/√D, γ = 200 as in bench_mp.py, seeded). Each round
times the fused `mpc.mp.mp_dot` (best of 3 calls) and then the matmul (best of 5 calls) back to back, so both
see the same machine state; the per-round ratio's min, median and max are printed, because on a shared
machine a single ratio means little. Run with NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell to measure
AVX2 code on a wider CPU (the SIMD level actually used is printed, from bench_mp.simd_level).

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_mp_ratio.py [--rounds 15]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

BATCH, D, H = 128, 784, 1000


def best_of(fn, reps: int) -> float:
    """Fastest of `reps` back-to-back calls (seconds)."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rounds(n: int) -> list[tuple[float, float]]:
    """(fused seconds, matmul seconds) per round, one numba thread and one BLAS thread."""
    import numba
    from threadpoolctl import threadpool_limits

    from mpc.mp import mp_dot
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (BATCH, D)).astype(np.float32)
    w = (rng.uniform(-1, 1, (H, D)) / np.sqrt(D)).astype(np.float32)
    from bench_mp import GAMMA1 as gamma
    numba.set_num_threads(1)
    mp_dot(x[:4], w[:8], gamma)   # compile away from the timed calls
    out = []
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(n):
            out.append((best_of(lambda: mp_dot(x, w, gamma), 3), best_of(lambda: x @ w.T, 5)))
    return out


def main(argv=None) -> None:
    """Print the per-round table and the ratio's min / median / max."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    from bench_mp import simd_level
    res = rounds(args.rounds)
    ratios = sorted(f / m for f, m in res)
    print(f"SIMD: {simd_level()}; batch {BATCH}, D = {D}, h = {H}, one thread each")
    print("| round | fused (ms) | matmul f32 (ms) | ratio |\n|---|---|---|---|")
    for i, (f, m) in enumerate(res):
        print(f"| {i + 1} | {1e3 * f:.2f} | {1e3 * m:.3f} | {f / m:.1f} |")
    print(f"ratio min {ratios[0]:.1f}, median {float(np.median(ratios)):.1f}, max {ratios[-1]:.1f} "
          f"over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
