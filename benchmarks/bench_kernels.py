"""Benchmark: the NumPy backend's compiled kernels (mpc.kernels_nb) layer by layer vs onnxruntime.

Each layer of the LeNet-style CNN of bench_convert.py (conv5x5 1->6 + ReLU + 2x2 max-pool on
28x28, conv5x5 6->16 + ReLU + 2x2 max-pool on 12x12, dense 256->84) is timed as the kernel call
that model.py makes and as a one-layer ONNX model in onnxruntime, side by side, at batch 256 and
batch 1 (best of --repeat runs after a warm-up; both engines with their default threads). Also
prints the conv kernel at a fixed block size (--lanes) so the effect of interleaving samples shows.
A second table times bigger 3x3 convs (padding 1, no epilogue), as in CIFAR/ResNet-style models,
with the default block size and with 1, 4 and 16 samples per block. A third table times strided
convs (the stride-2 layers of ResNet/MobileNet-style models: a 7x7 stem, 3x3 and depthwise 3x3
downsampling, a 1x1 projection) at batch 64. Prints markdown tables (`--tables` picks some).

    python benchmarks/bench_kernels.py [--repeat 200] [--tables layers,conv3,strided]
"""
from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from bench_convert import best, best_pair  # same directory: the script's folder is on sys.path
from onnx import TensorProto, helper, numpy_helper

from mpc.kernels_nb import conv2d_fused, matmul_fast

POOL = ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False)


def conv_layer_model(w, b, in_shape):
    n = helper.make_node
    nodes = [n("Conv", ["x", "w", "b"], ["c"]), n("Relu", ["c"], ["r"]),
             n("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    g = helper.make_graph(nodes, "conv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def dense_layer_model(w):
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "dense",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w.shape[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def conv_model(w, b, x_shape, **attrs):
    """A one-Conv ONNX model with a static input shape."""
    g = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], "conv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


STRIDED = (  # name, (N, C, H, W), (M, C/group, KH, KW), strides, pads, group
    ("7x7 s2 pad 3, 3->32, 64x64", (64, 3, 64, 64), (32, 3, 7, 7), (2, 2), (3,) * 4, 1),
    ("3x3 s2 pad 1, 32->64, 32x32", (64, 32, 32, 32), (64, 32, 3, 3), (2, 2), (1,) * 4, 1),
    ("3x3 s2 pad 1 depthwise, 64, 32x32", (64, 64, 32, 32), (64, 1, 3, 3), (2, 2), (1,) * 4, 64),
    ("1x1 s2, 64->128, 16x16", (64, 64, 16, 16), (128, 64, 1, 1), (2, 2), (0,) * 4, 1),
)


def strided_table(rng, repeat: int) -> None:
    """Strided convs: the kernel model.py calls against onnxruntime."""
    print("| strided conv, batch 64 | mpc kernel (ms) | onnxruntime (ms) | mpc / onnxruntime |")
    print("|---|---|---|---|")
    for name, xs, ws, strides, pads, group in STRIDED:
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) * 0.1).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        sess = ort.InferenceSession(conv_model(w, b, xs, strides=list(strides), pads=list(pads), group=group)
                                    .SerializeToString(), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {"x": x})[0]

        def conv(x=x, w=w, b=b, strides=strides, pads=pads, group=group):
            return conv2d_fused(x, w, b, strides, pads, (1, 1), group)
        assert np.abs(conv() - ref).max() <= 2e-5 * max(1.0, float(np.abs(ref).max())), name
        t, t_ort = best_pair(conv, lambda s=sess, x=x: s.run(None, {"x": x}), max(6, repeat // 10))
        print(f"| {name} | {t * 1e3:.2f} | {t_ort * 1e3:.2f} | {t / t_ort:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--lanes", type=int, default=1, help="fixed block size shown beside the default")
    p.add_argument("--tables", default="layers,conv3,strided", help="comma-separated subset to print")
    args = p.parse_args()
    tables = args.tables.split(",")
    rng = np.random.default_rng(0)
    if "layers" in tables:
        layers_table(rng, args)
    if "conv3" in tables:
        conv3_table(rng, args.repeat)
    if "strided" in tables:
        strided_table(rng, args.repeat)


def layers_table(rng, args) -> None:
    """The LeNet-style CNN's layers at batch 256 and 1."""
    w1, b1 = (rng.standard_normal((6, 1, 5, 5)) * 0.2).astype(np.float32), np.zeros(6, np.float32)
    w2, b2 = (rng.standard_normal((16, 6, 5, 5)) * 0.08).astype(np.float32), np.zeros(16, np.float32)
    wf = (rng.standard_normal((256, 84)) * 0.06).astype(np.float32)
    layers = [("conv1 5x5 1->6 +relu+pool", conv_layer_model(w1, b1, [1, 28, 28]), (1, 28, 28),
               lambda x, lanes=None: conv2d_fused(x, w1, b1, (1, 1), (0,) * 4, (1, 1), 1, True, POOL, lanes)),
              ("conv2 5x5 6->16 +relu+pool", conv_layer_model(w2, b2, [6, 12, 12]), (6, 12, 12),
               lambda x, lanes=None: conv2d_fused(x, w2, b2, (1, 1), (0,) * 4, (1, 1), 1, True, POOL, lanes)),
              ("dense 256->84", dense_layer_model(wf), (256,), lambda x, lanes=None: matmul_fast(x, wf))]
    print(f"| layer | batch | mpc kernel (ms) | onnxruntime (ms) | mpc / onnxruntime "
          f"| mpc kernel, lanes={args.lanes} (ms) |")
    print("|---|---|---|---|---|---|")
    for name, model, shape, kernel in layers:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        for n in (256, 1):
            x = rng.uniform(0, 1, (n,) + shape).astype(np.float32)
            ref = sess.run(None, {"x": x})[0]
            got = kernel(x)
            assert np.abs(got - ref).max() <= 2e-5 * max(1.0, float(np.abs(ref).max())), name
            t_mpc = best(lambda k=kernel, x=x: k(x), args.repeat) * 1e3
            t_ort = best(lambda s=sess, x=x: s.run(None, {"x": x}), args.repeat) * 1e3
            fixed = "-"
            if name.startswith("conv"):
                fixed = f"{best(lambda k=kernel, x=x: k(x, args.lanes), args.repeat) * 1e3:.3f}"
            print(f"| {name} | {n} | {t_mpc:.3f} | {t_ort:.3f} | {t_mpc / t_ort:.2f}x | {fixed} |")
    print()


def conv3_table(rng, repeat: int) -> None:
    """Bigger 3x3 convs (padding 1) at several block sizes."""
    print("| conv 3x3 pad 1 | mpc kernel (ms) | onnxruntime (ms) | mpc / onnxruntime "
          "| lanes=1 | lanes=4 | lanes=16 |")
    print("|---|---|---|---|---|---|---|")
    for n, c, m, h in ((32, 3, 32, 32), (64, 32, 32, 32), (64, 64, 64, 16), (64, 16, 32, 56)):
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((m, c, 3, 3)) * 0.1).astype(np.float32)
        b = np.zeros(m, np.float32)
        sess = ort.InferenceSession(conv_model(w, b, x.shape, pads=[1] * 4).SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        ref = sess.run(None, {"x": x})[0]

        def conv(lanes=None, x=x, w=w, b=b):
            return conv2d_fused(x, w, b, (1, 1), (1,) * 4, (1, 1), 1, lanes=lanes)
        assert np.abs(conv() - ref).max() <= 2e-5 * max(1.0, float(np.abs(ref).max()))
        reps = max(5, repeat // 20)
        t = [best(lambda k=k: conv(k), reps) * 1e3 for k in (None, 1, 4, 16)]
        t_ort = best(lambda s=sess, x=x: s.run(None, {"x": x}), reps) * 1e3
        print(f"| N={n} C={c} M={m} {h}x{h} | {t[0]:.2f} | {t_ort:.2f} | {t[0] / t_ort:.2f}x | {t[1]:.2f} "
              f"| {t[2]:.2f} | {t[3]:.2f} |")
    print()


if __name__ == "__main__":
    main()
