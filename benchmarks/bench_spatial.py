"""Benchmark: the spatial, normalization and activation ops: ONNX node-test outcomes per op type, and
model.py speed against onnxruntime on one-op models of realistic size.

The node tests are ONNX's own cases for these op types, regenerated from onnx.backend.test.case.node by
tests/spatial/node_suite.py (this script puts tests/ on sys.path to share it). Timings: best-of wall time
of model.py's `run` and of an onnxruntime session on the same input, measured in alternating rounds;
the ratio (model.py / onnxruntime) is what to compare across machines. Writes bench_spatial.png.

    python benchmarks/bench_spatial.py [--repeat 10]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
from bench_convert import best_pair
from onnx import numpy_helper

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mpc.backends.numpy_backend import render_model
from spatial import node_suite

from mpc.frontend import load_onnx

# name -> (graph text, weights {name: shape}); batch 32
MODELS = {
    "Conv1d 64->64 k5, L=256": (("g (float[32, 64, 256] x) => (float[32, 64, 256] y) "
                                "{ y = Conv <pads = [2, 2]> (x, w, b) }"), {"w": (64, 64, 5), "b": (64,)}),
    "Conv3d 8->16 k3, 16^3": (("g (float[32, 8, 16, 16, 16] x) => (float[32, 16, 14, 14, 14] y) "
                              "{ y = Conv (x, w) }"), {"w": (16, 8, 3, 3, 3)}),
    "ConvTranspose2d 16->8 s2, 32^2": (("g (float[32, 16, 32, 32] x) => (float[32, 8, 64, 64] y) "
                                       "{ y = ConvTranspose <strides = [2, 2], pads = [1, 1, 1, 1], "
                                       "output_padding = [1, 1]> (x, w) }"), {"w": (16, 8, 3, 3)}),
    "MaxPool1d k3 s2, L=1024": (("g (float[32, 64, 1024] x) => (float[32, 64, 511] y) "
                                "{ y = MaxPool <kernel_shape = [3], strides = [2]> (x) }"), {}),
    "Resize bilinear x2, 64^2": (("g (float[32, 16, 64, 64] x) => (float[32, 16, 128, 128] y) "
                                 "{ y = Resize <mode = \"linear\"> (x, r, s) }"), {"r": (0,), "s": (4,)}),
    "LayerNorm 768, 128 tokens": (("g (float[32, 128, 768] x) => (float[32, 128, 768] y) "
                                  "{ y = LayerNormalization (x, w, b) }"), {"w": (768,), "b": (768,)}),
    "Gelu (erf), 128x768": ("g (float[32, 128, 768] x) => (float[32, 128, 768] y) { y = Gelu (x) }", {}),
}


def build(text: str, weights: dict) -> onnx.ModelProto:
    """The one-op model with seeded weights as initializers (Resize: no roi, scales [1, 1, 2, 2])."""
    model = onnx.parser.parse_model(f'<ir_version: 9, opset_import: ["" : 20]>\n{text}')
    rng = np.random.default_rng(0)
    for name, shape in weights.items():
        value = np.array([1, 1, 2, 2], np.float32) if name == "s" else rng.standard_normal(shape).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    return model


def time_model(name: str, model: onnx.ModelProto, work: Path, repeat: int) -> dict:
    """model.py vs onnxruntime wall time on one seeded batch, after checking they agree."""
    loaded = load_onnx(model.SerializeToString(), static_batch=True)
    folder = work / f"m{len(list(work.iterdir()))}"
    folder.mkdir()
    (folder / "model.py").write_text(render_model(loaded.graph))
    np.savez(folder / "weights.npz", **loaded.graph.weights)
    spec = importlib.util.spec_from_file_location(f"bench_spatial_{folder.name}", folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    vi = model.graph.input[0]
    x = np.random.default_rng(1).standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim])
    x = x.astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref, got = sess.run(None, {"x": x})[0], mod.run({"x": x})["y"]
    assert np.abs(got - ref).max() <= 2e-5 * max(1.0, float(np.abs(ref).max())), f"{name}: model.py disagrees"
    t_np, t_ort = best_pair(lambda: mod.run({"x": x}), lambda: sess.run(None, {"x": x}), repeat)
    return {"model": name, "numpy_ms": t_np * 1e3, "ort_ms": t_ort * 1e3, "ratio": t_np / t_ort}


def node_counts() -> dict[str, Counter]:
    """Outcome counts of ONNX's node tests, per op type."""
    counts: dict[str, Counter] = {}
    for o in (node_suite.run_case(c) for c in node_suite.cases()):
        counts.setdefault(o.op_type, Counter())[o.result] += 1
    return dict(sorted(counts.items()))


def plot(counts: dict[str, Counter], rows: list[dict], path: Path) -> None:
    """Node-test outcomes per op (left) and model.py / onnxruntime time ratios (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [3, 2]})
    ops = list(counts)
    bottom = np.zeros(len(ops))
    for result, color in [("pass", "tab:green"), ("rejected", "tab:gray"), ("wrong", "tab:red"),
                          ("crash", "black")]:
        v = np.array([counts[o][result] for o in ops], float)
        a.barh(ops, v, left=bottom, color=color, label=result)
        bottom += v
    a.invert_yaxis()
    a.set_xlabel("ONNX node test cases")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=4)
    a.set_title("ONNX node tests of the spatial/normalization/activation ops")
    names = [r["model"] for r in rows]
    b.barh(names, [r["ratio"] for r in rows], color="tab:blue")
    b.axvline(1.0, color="black", lw=0.8)
    b.invert_yaxis()
    b.set_xscale("log")
    b.set_xlabel("model.py / onnxruntime time (log scale)")
    b.set_title("model.py speed, batch 32")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Print both tables and write bench_spatial.png."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=6)
    args = p.parse_args()
    counts = node_counts()
    print("| op type | pass | rejected | wrong | crash |\n|---|---|---|---|---|")
    for op, c in counts.items():
        print(f"| {op} | {c['pass']} | {c['rejected']} | {c['wrong']} | {c['crash']} |")
    total = sum(counts.values(), Counter())
    print(f"| **all {sum(total.values())}** | {total['pass']} | {total['rejected']} | {total['wrong']} "
          f"| {total['crash']} |\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [time_model(n, build(*spec), Path(tmp), args.repeat) for n, spec in MODELS.items()]
    print("| one-op model (batch 32) | model.py (ms) | onnxruntime (ms) | model.py / onnxruntime |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['numpy_ms']:.1f} | {r['ort_ms']:.1f} | {r['ratio']:.2f}x |")
    plot(counts, rows, ROOT / "benchmarks" / "bench_spatial.png")


if __name__ == "__main__":
    main()
