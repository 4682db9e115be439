"""AdaBreg sweep on the digits MLP (float): one JSON line per configuration.

Each configuration: post-training `lbi-prune{sparsity=start}`, then AdaBreg fine-tuning
(`mpc.train.bregman.finetune_bregman`, batch 64) on the training file with a seeded 20 % of it held
out to pick the epoch written, optional distillation from the dense model's logits, then `fuse`.
Choices between configurations are made on `val` (the held-out part of train); `test` is the 540
held-out test samples, printed for the record only.

    OMP_NUM_THREADS=1 python benchmarks/sweep_adabreg.py \
        '{"start":0.85,"lam":30,"lr":0.03,"epochs":150,"schedule":"cosine","distill":0.5,"seed":0}' ...
"""
from __future__ import annotations

import json
import sys
import time

import bench_sparsity as B

from mpc.ir import run
from mpc.passmanager import PassContext, run_pipeline
from mpc.train.bregman import finetune_bregman


def one(cfg: dict, train, test, calib, teacher, dense: int) -> dict:
    """Prune, fine-tune and measure one configuration."""
    kw = dict(cfg)
    g = B.convert(f"lbi-prune{{sparsity={kw.pop('start')}}}", "float", calib)
    distill = kw.pop("distill", 0.0)
    t0 = time.time()
    res = finetune_bregman(g, train, "adabreg", batch=64, val_fraction=0.2, teacher=teacher if distill else None,
                           distill=distill, **kw)
    run_pipeline(g, "fuse,dce", PassContext())
    h = res.history
    return {"cfg": cfg, "sel_epoch": res.selected_epoch, "val": h[res.selected_epoch - 1]["val accuracy"],
            "val_last": h[-1]["val accuracy"], "sparsity": 1 - B._weights(g) / dense,
            "test": B._accuracy(g, test), "secs": round(time.time() - t0)}


def main() -> None:
    """Run every configuration given on the command line."""
    import torch
    torch.set_num_threads(1)
    train, test, calib = B._data()
    dense_graph = B.convert("", "float", calib)
    teacher = next(iter(run(dense_graph, train.feeds).values()))
    for arg in sys.argv[1:]:
        print(json.dumps(one(json.loads(arg), train, test, calib, teacher, B._weights(dense_graph))), flush=True)


if __name__ == "__main__":
    main()
