"""fx.avgpool2d over windows whose area is not a power of two (3x3, 7x7 global pooling): the mean is an
exact integer division with the op's rounding. The emulator against a float64 reference written here
(floor(mean + 1/2) or floor(mean) of the window sums, pads counted), the C (gcc, ASan/UBSan) against
the emulator bit for bit, and `nn.global_avgpool` quantized on a small ONNX model against onnxruntime."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from fx.test_c_backend import check_c  # tests/ is on sys.path (CI runs plain pytest)
from mpc.ir import run

POOL = """graph @pool(%x: f32[N,3,7,7]) -> (%y: f32[N,3,{oh},{oh}]) {{
  %0 = fx.quantize(%x) {{to = "fx<10,4>", overflow = wrap}} : fx<10,4>[N,3,7,7]
  %1 = fx.avgpool2d(%0) {{kernel = [{k}, {k}], to = "fx<{w},{f}>", strides = [{s}, {s}], pads = [{p}, {p}, {p}, {p}], rounding = {rnd}, overflow = {ovf}}} : fx<{w},{f}>[N,3,{oh},{oh}]
  %2 = fx.cast(%1) {{to = "fx<{w},{f}>"}} : fx<{w},{f}>[N,3,{oh},{oh}]
  %y = fx.dequantize(%2) : f32[N,3,{oh},{oh}]
}}
"""
CASES = [  # kernel, stride, pad, result width, result fraction, rounding, overflow
    (3, 2, 1, 10, 4, "nearest", "saturate"),
    (3, 1, 0, 12, 6, "floor", "wrap"),        # a finer result fraction: the sum is shifted left first
    (7, 1, 0, 8, 2, "nearest", "wrap"),       # global pooling of 7x7 (area 49), a coarser result, wrapping
    (5, 2, 2, 6, 4, "floor", "saturate"),     # saturating a narrow result
]


def _reference(q: np.ndarray, k, s, p, frac_out, nearest: bool, width: int, saturate: bool) -> np.ndarray:
    """From the definition in float64: window sums of the stored integers (zeros in the pads), divided by
    k*k, scaled to frac_out, rounded, then clamped or wrapped to `width` bits."""
    n, c, h, _ = q.shape
    oh = (h + 2 * p - k) // s + 1
    xp = np.zeros((n, c, h + 2 * p, h + 2 * p))
    xp[:, :, p:p + h, p:p + h] = q
    out = np.zeros((n, c, oh, oh))
    for i in range(oh):
        for j in range(oh):
            mean = xp[:, :, i * s:i * s + k, j * s:j * s + k].sum(axis=(2, 3)) / (k * k) * 2.0 ** (frac_out - 4)
            out[:, :, i, j] = np.floor(mean + 0.5) if nearest else np.floor(mean)
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return np.clip(out, lo, hi) if saturate else (out - lo) % 2 ** width + lo


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")
@pytest.mark.parametrize("k, s, p, w, f, rnd, ovf", CASES)
def test_mean_is_a_rounding_division(tmp_path, k, s, p, w, f, rnd, ovf):
    rng = np.random.default_rng(k * 10 + s)
    oh = (7 + 2 * p - k) // s + 1
    text = POOL.format(k=k, s=s, p=p, w=w, f=f, rnd=rnd, ovf=ovf, oh=oh)
    x = rng.integers(-512, 512, (64, 3, 7, 7)) / 16.0
    x[:4] = -32.0                                   # the most negative value everywhere: negative ties
    x[4:8] = rng.integers(-1, 1, (4, 3, 7, 7)) * 0.0625 + 0.0625 * 4.5   # small values near ties
    x = x.astype(np.float32)
    qout = check_c(text, {}, x, tmp_path)           # C == emulator, bit for bit
    q = np.floor(x.astype(np.float64) * 16 + 0.5)   # fx.quantize with nearest rounding (values in range)
    want = _reference(q, k, s, p, f, rnd == "nearest", w, ovf == "saturate")
    np.testing.assert_array_equal(qout.astype(np.float64), want)


def test_global_avgpool_quantized_against_onnxruntime():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from mpc.data import Dataset
    from mpc.frontend.onnx import import_model
    from mpc.passmanager import PassContext, run_pipeline
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 3, 7, 7] x) => (float[N, 3, 1, 1] y) {
            r = Relu(x)
            y = GlobalAveragePool(r)
        }""")
    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, (128, 3, 7, 7)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    g = import_model(model, "gap.onnx")[0]
    run_pipeline(g, "canonicalize,quantize{width=12}", PassContext(dataset=Dataset({"x": x}, None, "t")))
    assert any(op.kind == "fx.avgpool2d" and op.attrs.kernel == (7, 7) for op in g.ops)
    got = run(g, {"x": x})["y"]
    assert np.abs(got - want).max() <= 2.0 ** -8   # a 12-bit format of range 3: steps of 2^-9, two roundings
