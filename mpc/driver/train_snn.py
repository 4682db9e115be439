"""`mpc train-snn --task T --method cvx|sg|sg-cvx|sg-sg`: train a recurrent LIF network on a sequence task.

The four variants of convex readout reconstruction (mpc.snn.tasks builds the task and the network):
- cvx: Gaussian hidden weights frozen (the witnesses); the readout is the certified group-Lasso optimum over
  their final-step spike patterns on the training set (mpc.snn.repair, mpc.snn.cvx).
- sg: every weight trained by back-propagation through time with surrogate gradients (mpc.train.spiking).
- sg-cvx: sg, then the readout replaced by the certified optimum over the trained network's spike patterns.
- sg-sg: sg, then as many epochs again of sg from that checkpoint (the baseline that matches sg-cvx's budget).
The output folder holds model.mpc, weights.npz, report.json and report.md (accuracies, and for the convex
variants primal, dual, gap, dictionary size and solve time).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mpc.data import Dataset, npz_bytes
from mpc.driver.outdir import staged_dir
from mpc.errors import BadFlag
from mpc.ir import Graph, print_graph, run

METHODS = ("cvx", "sg", "sg-cvx", "sg-sg")
LR, BATCH, LAMBDA = 3e-3, 64, 1e-2


def _accuracy(graph: Graph, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(run(graph, {"x": x})["logits"].argmax(1) == y))


def _sg(graph: Graph, train: Dataset, epochs: int, seed: int) -> dict:
    from mpc.train.spiking import finetune_snn
    res = finetune_snn(graph, train, epochs, LR, BATCH, seed, quiet=True)
    return {"epochs": res.epochs, "final loss": res.final_loss, "train accuracy": res.train_accuracy}


def train(task_name: str, method: str, depth: int, steps: int, seed: int,
          epochs: int) -> tuple[Graph, dict, float]:
    """Build and train the network; returns the graph, the report (see the module docstring) and the seconds."""
    from mpc.snn.repair import repair_readout
    from mpc.snn.tasks import load_task, network
    if method not in METHODS:
        raise BadFlag(f"--method: unknown method '{method}' (expected one of: {', '.join(METHODS)})")
    task = load_task(task_name, steps, seed)
    graph = network(steps, task.x_train.shape[2], task.classes, depth, seed)
    train_set = Dataset({"x": task.x_train}, task.y_train, task_name)
    report = {"task": task_name, "method": method, "depth": depth, "timesteps": steps, "seed": seed,
              "train samples": len(task.y_train), "test samples": len(task.y_test)}
    t0 = time.perf_counter()
    if method.startswith("sg"):
        report["sg"] = _sg(graph, train_set, epochs, seed)
    if method == "sg-sg":
        report["sg continued"] = _sg(graph, train_set, epochs, seed + 1)
    if method.endswith("cvx"):
        report["readout"] = repair_readout(graph, train_set, LAMBDA).section()
    seconds = time.perf_counter() - t0   # not in the report: same flags, byte-identical files
    report["train accuracy"] = _accuracy(graph, task.x_train, task.y_train)
    report["test accuracy"] = _accuracy(graph, task.x_test, task.y_test)
    return graph, report, seconds


def _markdown(r: dict) -> str:
    lines = [f"# mpc train-snn: {r['task']}, {r['method']}", ""]
    lines += [f"- {k}: {v}" for k, v in r.items() if not isinstance(v, dict)]
    for name in ("sg", "sg continued", "readout"):
        if name in r:
            lines += ["", f"## {name}", ""] + [f"- {k}: {v}" for k, v in r[name].items()]
    return "\n".join(lines) + "\n"


def cmd_train_snn(args) -> int:
    """The train-snn subcommand: train, then write the output folder atomically."""
    outdir = Path(args.output)
    graph, report, seconds = train(args.task, args.method, args.depth, args.timesteps, args.seed, args.epochs)
    with staged_dir(outdir, args.force) as tmp:
        (tmp / "model.mpc").write_text(print_graph(graph))
        (tmp / "weights.npz").write_bytes(npz_bytes({k: graph.weights[k] for k in graph.used_weights()}))
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        (tmp / "report.md").write_text(_markdown(report))
    if not args.quiet:
        cert = report.get("readout")
        extra = f", relative gap {cert['relative gap']:.2g}" if cert else ""
        print(f"mpc: {args.method} on {args.task} (depth {args.depth}, T {args.timesteps}): test accuracy "
              f"{100 * report['test accuracy']:.2f}%{extra}, {seconds:.1f} s -> {outdir}/")
    return 0
