"""Fig. 4.1 of V. Kotak's thesis (IISc, "Efficient Training and Memory Optimization Strategies for Margin
Propagation Based Networks") on this machine: latency and peak memory of an MP stack 784 → h → 10.

Compares, at batch 128 and h ∈ {500, 1000, 2000, 4000}:
  seed    the thesis-style torch implementation: p and q materialised as (B, 2D, H), torch.sort, cumsum,
          α = max_k c_k (the thesis code's MPLinear), float32
  condat  mpc.mp.mp_dot(method="condat"), one Condat simplex projection per pair
  fused   mpc.mp.mp_dot(method="fused")
and a NumPy float32 matmul of the same shapes as the yardstick; then one fine-tuning step (forward +
backward, cross-entropy) with torch autograd through the thesis-style layers vs the fused autograd path.

Data (seeded): x ~ U(0, 1), W1 ~ U(−1, 1)/√784, γ1 = 200 (near the correlation peak of that thesis, ch. 3);
the hidden layer is rescaled to norm 5 per sample as the thesis code's code does, W2 ~ U(−1, 1)/√h, γ2 = 5.

Memory: every configuration runs in a fresh subprocess; after imports, data and a warm-up at h = 8 (JIT
compilation), the kernel's resident-set high-water mark is reset (/proc/self/clear_refs), the
configuration runs once, and the reported number is VmHWM minus the VmRSS before the run: the extra
memory at the high-water mark, the same method for numpy, numba and torch (with glibc's mmap threshold
fixed at 64 KB, so that memory freed earlier cannot hide a new array). A thesis-style run whose
predicted peak (bytes per B·2D·H element measured at the first h, times B·2D·H) exceeds 16 GB is skipped
and reported as OOM. Latency: best of several runs for the numba kernels and the matmul (in alternating
blocks, since this shared 2-core machine is noisy), one run for the seed style.

The SIMD level the kernels ran on is printed and recorded (numba's target CPU and OpenBLAS's core type);
NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell emulates an AVX2-only machine on a wider one.

Usage: python benchmarks/bench_mp.py [--quick] [--replot]
  --quick   h ∈ {500, 1000} only
  --replot  redraw the tables and the PNG from the last run's raw results (benchmarks/_cache/)
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "benchmarks")
CACHE = os.path.join(OUT_DIR, "_cache", "bench_mp.json")  # raw results, for --replot
BATCH, D_IN, D_OUT = 128, 784, 10
GAMMA1, GAMMA2, NORM_K = 200.0, 5.0, 5.0
MEM_LIMIT_GB = 16.0
HS_FULL, HS_QUICK = (500, 1000, 2000, 4000), (500, 1000)


# ---------------------------------------------------------------------------------------------------
# the three implementations of the stack
# ---------------------------------------------------------------------------------------------------

def make_data(h, seed=0):
    """Seeded float32 (x, W1, W2, labels) for the stack 784 → h → 10."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (BATCH, D_IN)).astype(np.float32)
    w1 = (rng.uniform(-1, 1, (h, D_IN)) / np.sqrt(D_IN)).astype(np.float32)
    w2 = (rng.uniform(-1, 1, (D_OUT, h)) / np.sqrt(h)).astype(np.float32)
    labels = rng.integers(0, D_OUT, BATCH)
    return x, w1, w2, labels


def rescale(hidden, xp=np):
    """Thesis-style rescaling of a layer's input to norm K per sample."""
    norm = xp.sqrt((hidden * hidden).sum(1, keepdims=True)) if xp is np else hidden.norm(dim=1, keepdim=True)
    return hidden * (NORM_K / norm)


def stack_numpy(x, w1, w2, method):
    """The MP stack with mpc.mp.mp_dot (method 'fused' or 'condat')."""
    from mpc.mp import mp_dot

    hidden = rescale(mp_dot(x, w1, GAMMA1, method=method)).astype(np.float32)
    return mp_dot(hidden, w2, GAMMA2, method=method)


def stack_matmul(x, w1, w2):
    """The same shapes as a float32 matmul stack: the yardstick."""
    return (x @ w1.T) @ w2.T


def seed_mp_layer(x, w, gamma):
    """Thesis-style MP layer in torch: z+ = p and z− = q built as (B, 2D, H), then sort, cumsum, max_k c_k."""
    import torch

    d = x.shape[1]
    ks = torch.arange(1, 2 * d + 1, dtype=x.dtype)[None, :, None]
    u = x[:, :, None] + w.T[None]
    v = w.T[None] - x[:, :, None]
    p = torch.cat([u, -u], dim=1)
    q = torch.cat([v, -v], dim=1)

    def threshold(z):
        s = torch.sort(z, dim=1, descending=True).values
        return ((torch.cumsum(s, dim=1) - gamma) / ks).max(dim=1).values

    return gamma * d / 2 * (threshold(p) - threshold(q))


def stack_seed(x, w1, w2):
    """The MP stack with thesis-style layers (torch tensors)."""
    return seed_mp_layer(rescale(seed_mp_layer(x, w1, GAMMA1), xp=None), w2, GAMMA2)


def stack_fused_torch(x, w1, w2):
    """The MP stack on the fused autograd path (torch tensors)."""
    from mpc.mp.autograd import mp_dot_torch

    return mp_dot_torch(rescale(mp_dot_torch(x, w1, GAMMA1), xp=None), w2, GAMMA2)


# ---------------------------------------------------------------------------------------------------
# child process: one configuration, fresh memory high-water mark
# ---------------------------------------------------------------------------------------------------

def _status_mb(field):
    """A VmRSS/VmHWM line of /proc/self/status in MB, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            line = next(ln for ln in f if ln.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


class PeakMemory:
    """Extra peak resident memory of a block: high-water mark during it minus the resident set before it.

    Resets the kernel's high-water mark (/proc/self/clear_refs, "5") first, so memory freed earlier (data
    set-up temporaries) does not hide the block's own allocations; falls back to the growth of ru_maxrss.
    """

    def __enter__(self):
        import gc

        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base = _status_mb("VmRSS")
        except OSError:
            self.base = None
        self.base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return self

    def __exit__(self, *exc):
        hwm = _status_mb("VmHWM")
        if self.base is not None and hwm is not None:
            self.mb = hwm - self.base
        else:
            self.mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - self.base_maxrss
        return False


def child_inference(kind, h, timing=True):
    """Extra peak memory and time of one inference of the stack, then (timing) best-of times; a dict."""
    x, w1, w2, _ = make_data(h)

    def run(a, b, c):
        if kind != "seed":
            return stack_numpy(a, b, c, kind)
        import torch

        return stack_seed(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c))

    small = make_data(8)
    run(*small[:3])  # compile / warm up away from the measured shapes
    with PeakMemory() as mem:
        t = time.perf_counter()
        y = np.asarray(run(x, w1, w2))
        first = time.perf_counter() - t
    result = {"latency_s": first, "peak_mb": mem.mb, "checksum": float(np.abs(y).sum())}
    if timing and kind != "seed":
        result.update(interleaved_timing(lambda: run(x, w1, w2), lambda: stack_matmul(x, w1, w2)))
    if timing and kind == "fused":
        result.update(single_thread_timing(lambda: run(x, w1, w2), lambda: stack_matmul(x, w1, w2)))
    return result


def single_thread_timing(kernel, matmul):
    """The same comparison with one numba thread and one BLAS thread: less exposed to other load on the
    shared machine (one free core is enough), so it is the steadier kernel-vs-matmul ratio."""
    import numba

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return {}
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            t = interleaved_timing(kernel, matmul, budget_s=4.0)
    finally:
        numba.set_num_threads(threads)
    return {"latency_1t_s": t["latency_s"], "matmul_1t_s": t["matmul_s"]}


def interleaved_timing(kernel, matmul, budget_s=8.0, rounds=25):
    """Best-of times for kernel and matmul, in alternating blocks so both see the same machine state."""
    best_k = best_m = float("inf")
    for i in range(rounds):
        best_k = min(best_k, best_of(kernel, 3 if best_k < budget_s / 30 else 1))
        best_m = min(best_m, best_of(matmul, 5))
        if i >= 1 and (i + 1) * best_k > budget_s:
            break
    return {"latency_s": best_k, "matmul_s": best_m}


def best_of(fn, reps):
    """Fastest of reps back-to-back calls, after a short sleep.

    The sleep lets the other thread pool (numba's OpenMP workers or OpenBLAS's) stop spinning; back to
    back, the best call is a warm one.
    """
    time.sleep(0.05)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def child_training(kind, h):
    """Time and extra peak memory of one fine-tuning step (forward + backward, cross-entropy)."""
    import torch

    x, w1, w2, labels = make_data(h)
    stack = stack_seed if kind == "seed" else stack_fused_torch
    target = torch.from_numpy(labels)

    def step(a, b, c, t):
        b = torch.from_numpy(b).requires_grad_()
        c = torch.from_numpy(c).requires_grad_()
        loss = torch.nn.functional.cross_entropy(stack(torch.from_numpy(a), b, c), t)
        loss.backward()
        return float(b.grad.abs().sum() + c.grad.abs().sum())

    small = make_data(8)
    step(*small[:3], torch.from_numpy(small[3]))
    with PeakMemory() as mem:
        t = time.perf_counter()
        step(x, w1, w2, target)
        first = time.perf_counter() - t
    extra = mem.mb
    best = first
    if kind == "fused":
        for _ in range(3):
            t = time.perf_counter()
            step(x, w1, w2, target)
            best = min(best, time.perf_counter() - t)
    return {"latency_s": best, "peak_mb": extra}


def run_child(mode, kind, h, for_memory=True):
    """Run one configuration in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, kind, str(h)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if for_memory:
        # a fixed glibc mmap threshold: every array of 64 KB or more gets fresh pages, so reuse of memory
        # freed earlier in the process cannot hide an allocation from the high-water mark (it costs page
        # faults, so best-of timings run in a child without it)
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# parent: schedule, predict OOM, tabulate, plot
# ---------------------------------------------------------------------------------------------------

def elements(h):
    """B·2D·H of the first layer: the size of one materialised p (or q) tensor."""
    return BATCH * 2 * D_IN * h


def predicted_gb(bytes_per_element, h, factor=1.0):
    """Predicted thesis-style peak in GB from the bytes per B·2D·H element measured at the first h."""
    return factor * bytes_per_element * elements(h) / 1e9


def measure_inference(hs):
    """Rows of the inference table: one dict per h."""
    rows, per_element = [], None
    for h in hs:
        row = {"h": h}
        for kind in ("condat", "fused"):
            memory = run_child("infer-mem", kind, h)
            row[kind] = run_child("infer", kind, h, for_memory=False)
            row[kind].pop("peak_mb", None)
            if "peak_mb" in memory:
                row[kind]["peak_mb"] = memory["peak_mb"]
            print(f"  h={h} {kind}: {row[kind]}", flush=True)
        if per_element is not None and predicted_gb(per_element, h) > MEM_LIMIT_GB:
            row["seed"] = {"oom_gb": predicted_gb(per_element, h)}
        else:
            row["seed"] = run_child("infer", "seed", h)
            if per_element is None and "peak_mb" in row["seed"]:
                per_element = row["seed"]["peak_mb"] * 1e6 / elements(h)
        print(f"  h={h} seed: {row['seed']}", flush=True)
        rows.append(row)
    return rows, per_element


def measure_training(per_element, hs):
    """Rows of the training table: seed vs fused at h = 1000, fused alone at the largest h."""
    rows = []
    # autograd keeps sort indices (int64) and gradients of the same size: assume twice the inference peak
    if per_element is not None and predicted_gb(per_element, 1000, factor=2.0) > MEM_LIMIT_GB:
        rows.append({"h": 1000, "kind": "seed", "oom_gb": predicted_gb(per_element, 1000, 2.0)})
    else:
        rows.append({"h": 1000, "kind": "seed", **run_child("train", "seed", 1000)})
    rows.append({"h": 1000, "kind": "fused", **run_child("train", "fused", 1000)})
    if max(hs) > 1000:
        rows.append({"h": max(hs), "kind": "fused", **run_child("train", "fused", max(hs))})
    for r in rows:
        print(f"  train {r}", flush=True)
    return rows


def fmt_time(r):
    """Latency cell: seconds or milliseconds, or why there is none."""
    if "oom_gb" in r:
        return f"OOM (needs {r['oom_gb']:.1f} GB)"
    if "error" in r:
        return "failed"
    s = r["latency_s"]
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"


def fmt_mem(r):
    """Memory cell in MB or GB."""
    if "peak_mb" not in r:
        return "–"
    mb = max(r["peak_mb"], 0.1)
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:.1f} MB"


def ratio(a, b, key):
    """a[key] / b[key] as '123×', or '–' when either is missing."""
    if key not in a or key not in b:
        return "–"
    return f"{a[key] / max(b[key], 1e-9):,.0f}×"


def inference_table(rows):
    """Markdown table of the inference measurements."""
    header = ("| h | thesis-style latency | thesis-style peak | condat latency | condat peak | fused latency | "
              "fused peak | matmul | fused / matmul | same, 1 thread each | thesis / fused time | "
              "thesis / fused memory |")
    lines = [header, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, c, f = r["seed"], r["condat"], r["fused"]
        mm = f["matmul_s"]
        one = f"{f['latency_1t_s'] / f['matmul_1t_s']:.1f}" if "latency_1t_s" in f else "–"
        fused_mem = {"peak_mb": max(f.get("peak_mb", 0), 0.1)}
        lines.append(
            f"| {r['h']} | {fmt_time(s)} | {fmt_mem(s)} | {fmt_time(c)} | {fmt_mem(c)} | {fmt_time(f)} | "
            f"{fmt_mem(f)} | {mm * 1e3:.2f} ms | {f['latency_s'] / mm:.1f} | {one} | "
            f"{ratio(s, f, 'latency_s')} | {ratio(s, fused_mem, 'peak_mb')} |"
        )
    return "\n".join(lines)


def training_table(rows):
    """Markdown table of the fine-tuning step measurements."""
    lines = ["| h | path | step time | peak memory |", "|---:|---|---:|---:|"]
    for r in rows:
        name = "thesis-style (autograd through sort/cumsum)" if r["kind"] == "seed" else "fused (MPDotFunction)"
        lines.append(f"| {r['h']} | {name} | {fmt_time(r)} | {fmt_mem(r)} |")
    seed, fused = rows[0], rows[1]
    if "peak_mb" in seed and "peak_mb" in fused:
        lines.append("")
        speed = seed["latency_s"] / fused["latency_s"]
        lines.append(f"At h = 1000 the fused step is {speed:,.0f}× faster and "
                     f"uses {seed['peak_mb'] / max(fused['peak_mb'], 0.1):,.0f}× less extra memory.")
    return "\n".join(lines)


def plot(rows, path):
    """Latency and memory vs h, log scale, thesis-style OOM points drawn as predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    hs = [r["h"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"seed": ("tab:red", "o", "thesis-style (sort)"), "condat": ("tab:blue", "s", "Condat"),
              "fused": ("tab:green", "^", "fused")}
    for kind, (color, marker, label) in styles.items():
        pts = [(r["h"], r[kind]) for r in rows]
        t = [(h, v["latency_s"]) for h, v in pts if "latency_s" in v]
        m = [(h, max(v["peak_mb"], 0.01)) for h, v in pts if "peak_mb" in v]
        oom = [(h, v["oom_gb"] * 1024) for h, v in pts if "oom_gb" in v]
        ax_t.plot(*zip(*t), marker=marker, color=color, label=label)
        ax_m.plot(*zip(*m), marker=marker, color=color, label=label)
        for h, mb in oom:
            ax_m.plot([h], [mb], linestyle="none", marker=marker, mfc="none", color=color, ms=9,
                      label="thesis-style, predicted: not run")
            ax_m.annotate(f"OOM ({mb / 1024:.0f} GB)", (h, mb), textcoords="offset points", xytext=(-30, -16),
                          fontsize=8, color=color)
    ax_t.plot(hs, [r["fused"]["matmul_s"] for r in rows], marker="x", color="gray", ls="--",
              label="NumPy float32 matmul")
    ax_m.axhline(MEM_LIMIT_GB * 1024, color="gray", ls=":", lw=1)
    ax_m.text(hs[0], MEM_LIMIT_GB * 1024 * 1.2, f"{MEM_LIMIT_GB:.0f} GB: not run above", fontsize=8,
              color="gray")
    for ax, title, ylabel in ((ax_t, "Inference latency, batch 128", "seconds"),
                              (ax_m, "Extra peak memory (resident-set high-water mark)", "MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("hidden width h (stack 784 → h → 10)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def machine():
    """One line describing the machine."""
    import numba
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores; numpy {np.__version__}, numba {numba.__version__} "
            f"({numba.config.NUMBA_NUM_THREADS} threads), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


AVX512_CPUS = ("avx512", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake", "tigerlake",
               "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "znver4", "znver5")


def simd_level():
    """The widest vector ISA the numba kernels were compiled for (NUMBA_CPU_NAME, else the host CPU)
    and OpenBLAS's core type, e.g. 'numba AVX2 (haswell); BLAS Haswell'."""
    import llvmlite.binding as ll
    import numba

    name = numba.config.CPU_NAME or ll.get_host_cpu_name()
    if numba.config.CPU_NAME and numba.config.CPU_NAME != "host":
        level = "AVX-512" if name.startswith(AVX512_CPUS) else "SSE" if name in ("generic", "x86-64") else "AVX2"
    else:
        feats = ll.get_host_cpu_features()
        level = "AVX-512" if feats.get("avx512f") else "AVX2" if feats.get("avx2") else "SSE"
    blas = os.environ.get("OPENBLAS_CORETYPE")
    try:
        import threadpoolctl
        info = [i for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"]
        blas = blas or (info[0].get("architecture") if info else None)
    except ImportError:
        pass
    return f"numba {level} ({name}); BLAS {blas or 'core type unknown'}"


def main(argv=None):
    """Run the benchmark, print the tables, write the PNG and the markdown section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only h = 500 and 1000")
    ap.add_argument("--replot", action="store_true",
                    help="redraw the tables and the PNG from the last run's raw results")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "KIND", "H"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, kind, h = args.child
        if mode == "train":
            print(json.dumps(child_training(kind, int(h))))
        else:
            print(json.dumps(child_inference(kind, int(h), timing=mode == "infer")))
        return
    if args.replot:
        with open(CACHE) as f:
            raw = json.load(f)
    else:
        raw = measure(HS_QUICK if args.quick else HS_FULL, args.quick)
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        with open(CACHE, "w") as f:
            json.dump(raw, f)
    report = render(**raw)
    print(report)
    plot(raw["rows"], os.path.join(OUT_DIR, "bench_mp.png"))
    with open(os.path.join(OUT_DIR, "bench_mp.md"), "w") as f:
        f.write(report + "\n")


def measure(hs, quick):
    """All measurements, as the keyword arguments of `render`."""
    start, load_before = time.time(), os.getloadavg()[0]
    print(f"machine: {machine()}; load average {load_before:.2f}", flush=True)
    print(f"SIMD level: {simd_level()}", flush=True)
    rows, per_element = measure_inference(hs)
    train = measure_training(per_element, hs)
    return {"rows": rows, "train": train, "per_element": per_element,
            "command": "python benchmarks/bench_mp.py" + (" --quick" if quick else ""),
            "machine_line": f"{machine()}; SIMD: {simd_level()}", "seconds": time.time() - start,
            "load": f"{load_before:.2f}/{os.getloadavg()[0]:.2f}"}


def method_note(per_element):
    """The paragraph that says what was measured and how."""
    per = f"{per_element:.1f} bytes" if per_element else "n/a"
    return (
        "Stack 784 → h → 10 of two MP layers, batch 128, float32, seeded random data (x ~ U(0,1), "
        f"W1 ~ U(−1,1)/√784, γ1 = {GAMMA1:g}; hidden rescaled to norm {NORM_K:g} per sample as in the thesis code's "
        f"code; W2 ~ U(−1,1)/√h, γ2 = {GAMMA2:g}). Peak memory: resident-set high-water mark during one run "
        "minus the resident set before it (VmHWM reset through /proc/self/clear_refs), in a fresh process "
        "(glibc mmap threshold fixed at 64 KB, so freed memory cannot hide new arrays; timings run in "
        "another process without it) after imports, data and a JIT warm-up at h = 8. "
        f"Thesis-style runs predicted above {MEM_LIMIT_GB:g} GB are not run ({per} per B·2D·H element, "
        "measured at the first h; the training prediction assumes twice that). Latency: best of up to 75 "
        "runs for condat and fused (blocks of 3 back-to-back runs alternating with blocks of 5 matmuls, "
        "same process), all threads (2) and again with one numba and one BLAS thread; one run for the seed "
        "style. The machine is shared with other jobs: the load average is printed, and the one-thread "
        "ratio is the steadier one."
    )


def render(rows, train, per_element, command, machine_line, seconds, load):
    """The markdown section: command, machine, method, tables."""
    return "\n".join([
        "## MP kernels: Fig 4.1 of the thesis on this machine (`benchmarks/bench_mp.py`)",
        "",
        (f"Command: `{command}` (took {seconds / 60:.1f} min; load average before/after: {load}). "
         f"Machine: {machine_line}."),
        "",
        method_note(per_element),
        "",
        "### Inference",
        "",
        inference_table(rows),
        "",
        "### One fine-tuning step (forward + backward, cross-entropy)",
        "",
        training_table(train),
        "",
        "![latency and memory vs h](bench_mp.png)",
    ])


if __name__ == "__main__":
    main()
