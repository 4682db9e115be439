"""Time-major leading dims: synapse ops applied to all T·N rows of a `[T, N, ...]` value.

matmul broadcasts [T,N,D] @ [D,H]; elementwise ops broadcast over leading dims; conv2d and the
2-D pools fold [T,N,C,H,W] into a batch of T·N images. Results are checked against float64 NumPy
references written from the definitions, and the graphs round-trip through the text form.
"""
from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import VerifyError
from mpc.ir import DType, TensorType, lookup, parse, print_graph, run
from mpc.ir.ops_nn import ConvAttrs, PoolAttrs

RNG = np.random.default_rng(11)
T, N = 3, 2


def _f32(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _infer(kind: str, types, attrs=None):
    d = lookup(kind)
    return d.infer(types, attrs if attrs is not None else d.attrs())


def _round_trip(src: str, weights) -> None:
    g = parse(src, weights)
    assert print_graph(g) == src
    assert print_graph(parse(print_graph(g), g.weights)) == src


# -- float64 references from the definitions ----------------------------------------------
def conv_ref(x, w, b, strides, pads, group):
    """Direct 2-D convolution of one [N,C,H,W] batch (cross-correlation, ONNX Conv), in float64."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    m, cg, kh, kw = w.shape
    oh = (xp.shape[2] - kh) // strides[0] + 1
    ow = (xp.shape[3] - kw) // strides[1] + 1
    y = np.zeros((x.shape[0], m, oh, ow))
    per = m // group
    for o in range(m):
        g = o // per
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw]
                y[:, o, i, j] = np.einsum("nchw,chw->n", patch, w[o])
    return y if b is None else y + b.astype(np.float64)[None, :, None, None]


def maxpool_ref(x, k, strides):
    """Max over each k×k window of one [N,C,H,W] batch, no padding."""
    oh = (x.shape[2] - k[0]) // strides[0] + 1
    ow = (x.shape[3] - k[1]) // strides[1] + 1
    y = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = x[:, :, i * strides[0]:i * strides[0] + k[0], j * strides[1]:j * strides[1] + k[1]].max((2, 3))
    return y


# -- matmul and elementwise ---------------------------------------------------------------
def test_matmul_time_major_infers_and_runs():
    x_t = TensorType(DType.f32, ("T", "N", 5))
    w_t = TensorType(DType.f32, (5, 4))
    assert _infer("nn.matmul", [x_t, w_t]) == [TensorType(DType.f32, ("T", "N", 4))]
    src = ("graph @g(%x: f32[T,N,5]) -> (%y: f32[T,N,4]) {\n"
           "  weight @w : f32[5,4]\n"
           "  %y = nn.matmul(%x, @w) : f32[T,N,4]\n"
           "}\n")
    w = {"w": _f32(5, 4)}
    _round_trip(src, w)
    x = _f32(T, N, 5)
    y = run(parse(src, w), {"x": x})["y"]
    assert y.shape == (T, N, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y, np.einsum("tnd,dh->tnh", x.astype(np.float64), w["w"].astype(np.float64)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, fn", [("nn.add", np.add), ("nn.sub", np.subtract), ("nn.mul", np.multiply),
                                      ("nn.div", np.divide)])
@pytest.mark.parametrize("b_shape", [(4,), (2, 4), (1, 2, 4), (3, 1, 4)])
def test_elementwise_broadcasts_over_leading_dims(kind, fn, b_shape):
    a_t = TensorType(DType.f32, (T, N, 4))
    assert _infer(kind, [a_t, TensorType(DType.f32, b_shape)]) == [a_t]
    dims = ",".join(map(str, b_shape))
    src = (f"graph @g(%a: f32[{T},{N},4]) -> (%y: f32[{T},{N},4]) {{\n"
           f"  weight @b : f32[{dims}]\n"
           f"  %y = {kind}(%a, @b) : f32[{T},{N},4]\n"
           "}\n")
    w = {"b": _f32(*b_shape) + 3}  # away from 0 for div
    _round_trip(src, w)
    a = _f32(T, N, 4)
    y = run(parse(src, w), {"a": a})["y"]
    np.testing.assert_allclose(y, fn(a.astype(np.float64), w["b"].astype(np.float64)), rtol=1e-5, atol=1e-6)


# -- conv and pooling ---------------------------------------------------------------------
def test_conv2d_infers_leading_dims():
    x_t = TensorType(DType.f32, ("T", "N", 4, 8, 8))
    w_t = TensorType(DType.f32, (6, 2, 3, 3))
    out = _infer("nn.conv2d", [x_t, w_t], ConvAttrs(strides=(2, 2), pads=(1, 1, 1, 1), group=2))
    assert out == [TensorType(DType.f32, ("T", "N", 6, 4, 4))]
    with pytest.raises(ValueError, match=r"conv2d wants input \[..,N,C,H,W\]"):
        _infer("nn.conv2d", [TensorType(DType.f32, (4, 8, 8)), w_t])


@pytest.mark.parametrize("strides, pads, group", [((1, 1), (0, 0, 0, 0), 1), ((2, 1), (1, 0, 2, 1), 2)])
def test_conv2d_time_major_matches_per_step_reference(strides, pads, group):
    src = ("graph @g(%x: f32[T,N,4,7,6]) -> (%y: f32[T,N,6,{oh},{ow}]) {{\n"
           "  weight @w : f32[6,{cg},3,3]\n"
           "  weight @b : f32[6]\n"
           "  %y = nn.conv2d(%x, @w, @b){attrs} : f32[T,N,6,{oh},{ow}]\n"
           "}}\n")
    oh = (7 + pads[0] + pads[2] - 3) // strides[0] + 1
    ow = (6 + pads[1] + pads[3] - 3) // strides[1] + 1
    attrs = ConvAttrs(strides=strides, pads=pads, group=group)
    text = ", ".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in vars(attrs).items()
                     if v != getattr(ConvAttrs(), k))
    src = src.format(oh=oh, ow=ow, cg=4 // group, attrs=f" {{{text}}}" if text else "")
    w = {"w": _f32(6, 4 // group, 3, 3), "b": _f32(6)}
    _round_trip(src, w)
    x = _f32(T, N, 4, 7, 6)
    y = run(parse(src, w), {"x": x})["y"]
    ref = np.stack([conv_ref(x[t], w["w"], w["b"], strides, pads, group) for t in range(T)])
    assert y.shape == ref.shape == (T, N, 6, oh, ow)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_maxpool2d_time_major_matches_per_step_reference():
    src = ("graph @g(%x: f32[T,N,3,6,6]) -> (%y: f32[T,N,3,3,3]) {\n"
           "  %y = nn.maxpool2d(%x) {kernel = [2, 2], strides = [2, 2]} : f32[T,N,3,3,3]\n"
           "}\n")
    _round_trip(src, {})
    x = _f32(T, N, 3, 6, 6)
    y = run(parse(src), {"x": x})["y"]
    np.testing.assert_array_equal(y, np.stack([maxpool_ref(x[t].astype(np.float64), (2, 2), (2, 2))
                                               for t in range(T)]).astype(np.float32))
    assert _infer("nn.maxpool2d", [TensorType(DType.f32, ("T", "N", 3, 6, 6))], PoolAttrs(kernel=(3, 3))) == \
        [TensorType(DType.f32, ("T", "N", 3, 4, 4))]


@pytest.mark.parametrize("kind, attrs", [
    ("nn.avgpool2d", "{kernel = [3, 3], pads = [1, 1, 1, 1]}"),
    ("mp.conv2d", "{gamma = 2.0, pads = [1, 1, 1, 1]}"),
])
def test_other_windowed_ops_fold_leading_dims(kind, attrs):
    """Same result as running each time step as its own 4-D batch."""
    ops = {"nn.avgpool2d": ("", "3"), "mp.conv2d": (", @w, @g", "5")}
    operands, m = ops[kind]
    decl = "  weight @w : f32[5,3,3,3]\n  weight @g : f32[5]\n" if kind == "mp.conv2d" else ""
    body = "graph @g(%x: f32[{lead}3,6,6]) -> (%y: f32[{lead}{m},6,6]) {{\n{decl}" \
           "  %y = {kind}(%x{operands}) {attrs} : f32[{lead}{m},6,6]\n}}\n"
    w = {"w": _f32(5, 3, 3, 3), "g": _f32(5)} if kind == "mp.conv2d" else {}
    five = parse(body.format(lead="T,N,", m=m, decl=decl, kind=kind, operands=operands, attrs=attrs), w)
    four = parse(body.format(lead="N,", m=m, decl=decl, kind=kind, operands=operands, attrs=attrs), w)
    _round_trip(print_graph(five), w)
    x = _f32(T, N, 3, 6, 6)
    y = run(five, {"x": x})["y"]
    ref = np.stack([run(four, {"x": x[t]})["y"] for t in range(T)])
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


def test_conv2d_rejects_mismatched_channels_with_leading_dims():
    src = ("graph @g(%x: f32[T,N,3,6,6]) -> (%y: f32[T,N,2,4,4]) {\n"
           "  weight @w : f32[2,4,3,3]\n"
           "  %y = nn.conv2d(%x, @w) : f32[T,N,2,4,4]\n"
           "}\n")
    with pytest.raises(VerifyError, match="channels 3 do not match weight"):
        parse(src, {"w": _f32(2, 4, 3, 3)})
