"""Benchmark: ONNX's node cases of the tensor, elementwise, logic and reduction ops, and their speed.

Part 1 counts, per op type, the node cases (regenerated from `onnx.backend.test.case.node`) that import
and agree with ONNX's expected outputs through mpc's interpreter, that are refused (and why, by the
first words of the error), and that give wrong numbers. Part 2 times one graph of these ops (Where,
ReduceLogSumExp, ArgMax, Gather, Slice, Pad, Mod on a [256, 1024] float32 input) through onnxruntime, the
interpreter and the emitted model.py, side by side in each round, and reports the median of the ratios.

    python benchmarks/bench_onnxc_ops.py [--repeat 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mpc.cli import main
from mpc.errors import MPCError
from tests.onnxc.test_node_cases import CASES, _outcome

GRAPH = """<ir_version: 8, opset_import: ["" : 18]>
g (float[256,1024] x) => (float[256,1] l, int64[256] a, float[256,8] g, float[256,517] p, float[256,1024] m) {
    c = Less(x, zero)  w = Where(c, x, half)  l = ReduceLogSumExp(w, one)  a = ArgMax <axis = 1, keepdims = 0> (x)
    g = Gather <axis = 1> (x, idx)  s = Slice(x, st, en, ax, sp)  p = Pad <mode = "reflect"> (s, pads)
    m = Mod <fmod = 1> (x, three)
}"""
CONSTS = {"zero": np.array(0, np.float32), "half": np.array(0.5, np.float32), "one": np.array([1], np.int64),
          "idx": np.array([0, 7, -1, 100, 3, 9, 511, 1000], np.int64), "st": np.array([1023], np.int64),
          "en": np.array([-2**63], np.int64), "ax": np.array([1], np.int64), "sp": np.array([-2], np.int64),
          "pads": np.array([0, 2, 0, 3], np.int64), "three": np.array(0.75, np.float32)}


REASONS = {"unsupported type": "input dtype", "opset version": "opset < 13", "must be a constant": "run-time input",
           "known at import": "run-time input"}


def _reason(case) -> str:
    """Why mpc refuses a case, in a few words (from its one-line error)."""
    from mpc.frontend.onnx import import_model, read_model
    try:
        import_model(read_model(case.model.SerializeToString(), case.name), case.name)
    except MPCError as e:
        return next((v for k, v in REASONS.items() if k in str(e)), "other")
    return "other"


def counts() -> dict[str, collections.Counter]:
    """op type -> Counter of pass / wrong / refused and the refusals' reasons."""
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case in CASES:
        op = min({n.op_type for n in case.model.graph.node})
        outcome = _outcome(case)
        table[op][outcome] += 1
        if outcome == "refused":
            table[op][_reason(case)] += 1
    return table


def _model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(GRAPH)
    model.graph.initializer.extend(numpy_helper.from_array(a, k) for k, a in CONSTS.items())
    del model.graph.input[1:]
    return model


def timings(repeat: int, rounds: int) -> list[dict[str, float]]:
    """Per round: median seconds of one run through onnxruntime, the interpreter and model.py."""
    from mpc.frontend.onnx import import_model
    from mpc.ir import run
    model = _model()
    x = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    graph = import_model(model, "bench")[0]
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, f"{tmp}/m.onnx")
        assert main(["convert", f"{tmp}/m.onnx", "--target", "float", "-o", f"{tmp}/out", "-q"]) == 0
        spec = importlib.util.spec_from_file_location("bench_onnxc_model", f"{tmp}/out/model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        runners = {"onnxruntime": lambda: sess.run(None, {"x": x}), "interpreter": lambda: run(graph, {"x": x}),
                   "model.py": lambda: module.run({"x": x})}
        out = []
        for _ in range(rounds):
            row = {}
            for name, fn in runners.items():
                fn()
                ts = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    fn()
                    ts.append(time.perf_counter() - t0)
                row[name] = statistics.median(ts)
            out.append(row)
    return out


def plot(table, rows, path: Path) -> None:
    """Stacked bars of outcomes per op type, and the per-round times."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ops = sorted(table)
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [4, 1]})
    bottom = np.zeros(len(ops))
    for key, colour in (("pass", "tab:green"), ("refused", "tab:grey"), ("wrong", "tab:red")):
        vals = np.array([table[o][key] for o in ops])
        a.bar(ops, vals, bottom=bottom, label=key, color=colour)
        bottom += vals
    a.set_ylabel("ONNX node cases")
    a.tick_params(axis="x", rotation=90)
    a.legend()
    a.set_title("node cases of the tensor/elementwise/logic/reduction ops (interpreter)")
    names = list(rows[0])
    for i, r in enumerate(rows):
        b.plot(names, [r[n] * 1e3 for n in names], "o-", label=f"round {i + 1}")
    b.set_ylabel("ms per run (median)")
    b.set_title("[256, 1024] graph")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main_(argv=None) -> None:
    """Print both tables and save benchmarks/bench_onnxc_ops.png."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = counts()
    total = collections.Counter()
    why = sorted(set(REASONS.values())) + ["other"]
    print(f"| op | cases | pass | wrong | refused | {' | '.join(why)} |\n|---|---|---|---|---|{'---|' * len(why)}")
    for op in [*sorted(table), "all"]:
        c = table.get(op, total)
        total.update(c if op != "all" else {})
        n = c["pass"] + c["refused"] + c["wrong"]
        print(f"| {op} | {n} | {c['pass']} | {c['wrong']} | {c['refused']} | {' | '.join(str(c[w]) for w in why)} |")
    print()
    rows = timings(args.repeat, args.rounds)
    print("| round | onnxruntime (ms) | interpreter (ms) | model.py (ms) | model.py / onnxruntime |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {i + 1} | {r['onnxruntime'] * 1e3:.2f} | {r['interpreter'] * 1e3:.2f} | {r['model.py'] * 1e3:.2f} "
              f"| {r['model.py'] / r['onnxruntime']:.2f}x |")
    plot(table, rows, ROOT / "benchmarks" / "bench_onnxc_ops.png")


if __name__ == "__main__":
    main_()
