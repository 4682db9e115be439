"""Benchmark: `mpc convert` wall time (whole process) and NumPy-backend inference vs onnxruntime.

Models: the thesis MLP shape 784-1024-512-256-128-10 (1.5 M parameters, random weights) and a
small LeNet-style CNN (1x28x28 input). Inference: batch 256 (and batch 1, 20x as many runs),
best of several runs in three rounds alternating with onnxruntime's, both engines with their
default threading on this machine. Prints a markdown table of times and ratios.

    python benchmarks/bench_convert.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def _init(rng, name, shape, scale):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def mlp_model(sizes=(784, 1024, 512, 256, 128, 10), seed=0) -> onnx.ModelProto:
    """The thesis MLP with random weights, as Gemm+Relu layers (torch-export style, transB=1)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    for i, (d, h) in enumerate(itertools.pairwise(sizes)):
        inits += [_init(rng, f"fc{i}.weight", (h, d), 1 / np.sqrt(d)), _init(rng, f"fc{i}.bias", (h,), 0.1)]
        y = f"gemm{i}" if i < len(sizes) - 2 else "logits"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [y], name=f"fc{i}", transB=1))
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"], name=f"relu{i}"))
            y = f"relu{i}"
        x = y
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", sizes[0]])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", sizes[-1]])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def cnn_model(seed=0) -> onnx.ModelProto:
    """LeNet-style CNN: conv5x5->6, BN, relu, maxpool, conv5x5->16, relu, maxpool, fc 256->84->10."""
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "c1.w", (6, 1, 5, 5), 0.2), _init(rng, "c1.b", (6,), 0.1),
             numpy_helper.from_array(np.ones(6, np.float32), "bn.s"), _init(rng, "bn.b", (6,), 0.1),
             _init(rng, "bn.m", (6,), 0.1), numpy_helper.from_array(np.full(6, 0.9, np.float32), "bn.v"),
             _init(rng, "c2.w", (16, 6, 5, 5), 0.08), _init(rng, "c2.b", (16,), 0.1),
             _init(rng, "f1.w", (84, 256), 0.06), _init(rng, "f1.b", (84,), 0.1),
             _init(rng, "f2.w", (10, 84), 0.1), _init(rng, "f2.b", (10,), 0.1)]
    n = helper.make_node
    nodes = [n("Conv", ["input", "c1.w", "c1.b"], ["a"], name="conv1"),
             n("BatchNormalization", ["a", "bn.s", "bn.b", "bn.m", "bn.v"], ["b"], name="bn1"),
             n("Relu", ["b"], ["c"], name="relu1"), n("MaxPool", ["c"], ["d"], name="pool1", kernel_shape=[2, 2],
                                                      strides=[2, 2]),
             n("Conv", ["d", "c2.w", "c2.b"], ["e"], name="conv2"), n("Relu", ["e"], ["f"], name="relu2"),
             n("MaxPool", ["f"], ["g"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
             n("Flatten", ["g"], ["h"], name="flatten"), n("Gemm", ["h", "f1.w", "f1.b"], ["i"], name="fc1", transB=1),
             n("Relu", ["i"], ["j"], name="relu3"), n("Gemm", ["j", "f2.w", "f2.b"], ["logits"], name="fc2", transB=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def best(fn, repeat: int) -> float:
    """Best wall time of `repeat` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_pair(fa, fb, repeat: int, rounds: int = 3) -> tuple[float, float]:
    """Best wall times of fa and fb over `rounds` alternating rounds of best-of-(repeat/rounds),
    so that a slow minute on a noisy machine does not hit only one of them. (Calls are not
    alternated one by one: each engine's thread pool spins for a while after a run and would slow
    the other one down.)"""
    ta = tb = float("inf")
    for _ in range(rounds):
        ta = min(ta, best(fa, max(1, repeat // rounds)))
        tb = min(tb, best(fb, max(1, repeat // rounds)))
    return ta, tb


def bench(name: str, model: onnx.ModelProto, shape, work: Path, repeat: int) -> dict:
    """Convert time (whole process) and inference times for one model."""
    path = work / f"{name}.onnx"
    onnx.save(model, path)
    out = work / f"out_{name}"
    cmd = [sys.executable, "-m", "mpc", "convert", str(path), "--target", "float", "-o", str(out), "--force", "-q"]
    convert_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        convert_times.append(time.perf_counter() - t0)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", out / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = np.random.default_rng(1).uniform(0, 1, (256,) + shape).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0]
    got = mod.run({"input": x})["logits"]
    assert np.abs(got - ref).max() <= 2e-5 * max(1.0, float(np.abs(ref).max())), "numpy backend disagrees"
    t_np, t_ort = best_pair(lambda: mod.run({"input": x}), lambda: sess.run(None, {"input": x}), repeat)
    x1 = x[:1]
    t1_np, t1_ort = best_pair(lambda: mod.run({"input": x1}), lambda: sess.run(None, {"input": x1}), 20 * repeat)
    params = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    return {"model": name, "params": params, "convert_s": float(np.median(convert_times)),
            "numpy_ms": t_np * 1e3, "ort_ms": t_ort * 1e3, "ratio": t_np / t_ort,
            "numpy1_us": t1_np * 1e6, "ort1_us": t1_ort * 1e6, "ratio1": t1_np / t1_ort}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench("mlp_784_1024_512_256_128_10", mlp_model(), (784,), Path(tmp), args.repeat),
                bench("lenet_cnn_28x28", cnn_model(), (1, 28, 28), Path(tmp), args.repeat)]
    print("| model | parameters | `mpc convert` wall (s, median of 3) | numpy model.py (ms, batch 256) "
          "| onnxruntime (ms) | numpy / onnxruntime | batch 1: numpy (µs) | onnxruntime (µs) | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['convert_s']:.2f} | {r['numpy_ms']:.2f} | {r['ort_ms']:.2f} "
              f"| {r['ratio']:.2f}x | {r['numpy1_us']:.1f} | {r['ort1_us']:.1f} | {r['ratio1']:.2f}x |")


if __name__ == "__main__":
    main()
