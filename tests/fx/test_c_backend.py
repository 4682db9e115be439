"""The C backend against the emulator, bit for bit: every fx op kind in small graphs, several
formats, saturation and wrap, rounding ties and the most negative value, compiled with the host gcc
(-std=c99 -Wall -Wextra -Werror -O2 plus address and undefined-behaviour sanitizers). Also: the C of
MP layers holds no `*` or `/` between data-dependent values, and the emitted folder builds with make."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mpc.backends.c import render_c
from mpc.backends.c.build import SANITIZE, compile_host, run_host

from mpc.data import Dataset
from mpc.driver.verify_fx import emulator_io
from mpc.ir import DType, parse

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")


def check_c(text: str, weights: dict, x: np.ndarray, tmp: Path, sanitize: bool = True) -> np.ndarray:
    """Emit C for the graph, compile, run on x; assert every output integer equals the emulator's."""
    g = parse(text, weights)
    qin, qout = emulator_io(g, Dataset({"x": x}, None, "test"))
    c, h, main, _ = render_c(g)
    for name, body in (("model.c", c), ("model.h", h), ("main.c", main)):
        (tmp / name).write_text(body)
    exe = compile_host(tmp, tmp / "model", SANITIZE if sanitize else ())
    got = np.frombuffer(run_host(exe, np.ascontiguousarray(qin).tobytes()), dtype=qout.dtype)
    np.testing.assert_array_equal(got, qout.reshape(-1))
    return qout


def ties(frac: int, n: int, width: int, rng) -> np.ndarray:
    """Values on rounding ties at `frac`, both signs, and beyond the range of fx<width,frac>."""
    k = rng.integers(-(1 << (width - 1)), 1 << (width - 1), n)
    v = (k + 0.5) / 2.0 ** frac
    v[: n // 8] = rng.uniform(-4, 4, n // 8) * 2.0 ** (width - 1 - frac)   # saturate or wrap
    v[n // 8] = -(2.0 ** (width - 1 - frac))                              # the most negative value
    return v


CASTS = """graph @casts(%x: f32[N,{n}]) -> (%y: f32[N,{n}]) {{
  %0 = fx.quantize(%x) {{to = "fx<12,6>", rounding = floor, overflow = wrap}} : fx<12,6>[N,{n}]
  %1 = fx.cast(%0) {{to = "fx<8,2>"}} : fx<8,2>[N,{n}]
  %2 = fx.cast(%0) {{to = "fx<6,4>", rounding = floor, overflow = wrap}} : fx<6,4>[N,{n}]
  %3 = fx.add(%1, %2) {{to = "fx<10,3>", rounding = nearest, overflow = wrap}} : fx<10,3>[N,{n}]
  %4 = fx.cast(%3) {{to = "fx<16,9>"}} : fx<16,9>[N,{n}]
  %5 = fx.relu(%4) : fx<16,9>[N,{n}]
  %6 = fx.cast(%5) {{to = "fx<7,5>"}} : fx<7,5>[N,{n}]
  %y = fx.dequantize(%6) : f32[N,{n}]
}}
"""


def test_conversions_rounding_and_overflow(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([ties(6, 64 * 16, 12, rng), ties(7, 64 * 16, 13, rng)]).reshape(-1, 64).astype(np.float32)
    q = check_c(CASTS.format(n=64), {}, x, tmp_path)
    assert q.min() < 0 or q.max() > 0


DENSE = """graph @dense(%x: f32[N,{d}]) -> (%y: f32[N,{h}]) {{
  weight @w : fx<{ww},{fw}>[{d},{h}]
  weight @b : fx<{bw},{fa}>[{h}]
  %0 = fx.quantize(%x) {{to = "fx<{xw},{fx}>"}} : fx<{xw},{fx}>[N,{d}]
  %1 = fx.matmul(%0, @w) {{to = "fx<{aw},{fa}>", overflow = {ovf}}} : fx<{aw},{fa}>[N,{h}]
  %2 = fx.add(%1, @b) {{to = "fx<{aw},{fa}>", overflow = {ovf}}} : fx<{aw},{fa}>[N,{h}]
  %3 = fx.relu(%2) : fx<{aw},{fa}>[N,{h}]
  %4 = fx.cast(%3) {{to = "fx<{xw},{fo}>", rounding = {rnd}, overflow = {ovf}}} : fx<{xw},{fo}>[N,{h}]
  %y = fx.dequantize(%4) : f32[N,{h}]
}}
"""


@pytest.mark.parametrize("xw, ww, aw, ovf, rnd", [(8, 8, 14, "saturate", "nearest"), (8, 6, 12, "wrap", "floor"),
                                                  (16, 16, 40, "saturate", "floor"), (16, 12, 20, "wrap", "nearest")])
def test_matmul_bias_relu(tmp_path, xw, ww, aw, ovf, rnd):
    rng = np.random.default_rng(xw + ww + aw)
    d, h, fx_, fw = 37, 11, xw - 3, ww - 2
    fa = fx_ + fw
    w = rng.integers(-(1 << (ww - 1)), 1 << (ww - 1), (d, h))
    w[0, 0] = -(1 << (ww - 1))
    b = rng.integers(-(1 << (aw - 2)), 1 << (aw - 2), h)
    weights = {"w": w.astype(f"int{8 if ww <= 8 else 16}"), "b": b.astype(DType.make("fx", (aw, fa)).numpy)}
    text = DENSE.format(d=d, h=h, ww=ww, fw=fw, bw=aw, fa=fa, xw=xw, fx=fx_, aw=aw, ovf=ovf, rnd=rnd, fo=xw - 5)
    x = ties(fx_, 200 * d, xw, rng).reshape(200, d).astype(np.float32)
    check_c(text, weights, x, tmp_path)


SPATIAL = """graph @spatial(%x: f32[N,4,7,6]) -> (%y: f32[N,6,2,2]) {
  weight @k : fx<8,6>[6,2,3,3]
  weight @b : fx<12,10>[6,1,1]
  weight @s : i8[6,2]
  weight @t : i8[6,2]
  %0 = fx.quantize(%x) {to = "fx<10,4>", overflow = wrap} : fx<10,4>[N,4,7,6]
  %1 = fx.conv2d(%0, @k) {to = "fx<20,10>", strides = [2, 1], pads = [1, 0, 2, 1], group = 2} : fx<20,10>[N,6,4,5]
  %2 = fx.add(%1, @b) {to = "fx<16,10>", overflow = wrap} : fx<16,10>[N,6,4,5]
  %3 = fx.maxpool2d(%2) {kernel = [2, 2], strides = [2, 2], ceil_mode = true} : fx<16,10>[N,6,2,3]
  %4 = fx.avgpool2d(%3) {kernel = [2, 2], to = "fx<12,7>", strides = [1, 2], pads = [0, 0, 1, 1], rounding = floor} : fx<12,7>[N,6,2,2]
  %5 = fx.mp_conv2d(%0, @k, @s, @t) {gamma = 700, to = "fx<30,8>", c_shift = 1, pads = [1, 1, 1, 1], group = 2} : fx<30,8>[N,6,7,6]
  %6 = fx.maxpool2d(%5) {kernel = [3, 3], strides = [3, 3]} : fx<30,8>[N,6,2,2]
  %7 = fx.add(%4, %6) {to = "fx<24,7>", rounding = nearest} : fx<24,7>[N,6,2,2]
  %8 = fx.cast(%7) {to = "fx<16,6>"} : fx<16,6>[N,6,2,2]
  %y = fx.dequantize(%8) : f32[N,6,2,2]
}
"""


def _gains(rng, h, t):
    return {"s": rng.integers(0, 6, (h, t)).astype(np.int8), "t": rng.integers(-1, 2, (h, t)).astype(np.int8)}


def test_conv_pools_and_mp_conv(tmp_path):
    rng = np.random.default_rng(5)
    k = rng.integers(-128, 128, (6, 2, 3, 3))
    k[0, 0, 0, 0] = -128
    weights = {"k": k.astype(np.int8), "b": rng.integers(-2048, 2048, (6, 1, 1)).astype(np.int16), **_gains(rng, 6, 2)}
    x = ties(4, 12 * 4 * 7 * 6, 10, rng).reshape(12, 4, 7, 6).astype(np.float32)
    check_c(SPATIAL, weights, x, tmp_path)


MP = """graph @mp(%x: f32[N,{d}]) -> (%y: f32[N,{h}]) {{
  weight @w : fx<{ww},{fw}>[{h},{d}]
  weight @s : i8[{h},3]
  weight @t : i8[{h},3]
  %0 = fx.quantize(%x) {{to = "fx<{xw},{fx}>"}} : fx<{xw},{fx}>[N,{d}]
  %1 = fx.mp_dot(%0, @w, @s, @t) {{gamma = {gamma}, to = "fx<{ow},{fo}>", c_shift = {c}, overflow = {ovf}}} : fx<{ow},{fo}>[N,{h}]
  %2 = fx.cast(%1) {{to = "fx<{xw},{fx}>"}} : fx<{xw},{fx}>[N,{h}]
  %y = fx.dequantize(%2) : f32[N,{h}]
}}
"""


@pytest.mark.parametrize("xw, ww, c, gamma, ow, ovf", [(8, 8, 0, 37, 24, "saturate"), (16, 16, -2, 300000, 40, "wrap"),
                                                       (12, 10, 3, 1, 16, "wrap")])
def test_mp_dot(tmp_path, xw, ww, c, gamma, ow, ovf):
    rng = np.random.default_rng(gamma)
    d, h = 23, 9
    w = rng.integers(-(1 << (ww - 1)), 1 << (ww - 1), (h, d))
    weights = {"w": w.astype(f"int{8 if ww <= 8 else 16}"), **{k: np.asarray(v).astype(np.int8)
                                                              for k, v in _gains(rng, h, 3).items()}}
    text = MP.format(d=d, h=h, ww=ww, fw=ww - 1, xw=xw, fx=xw - 2, gamma=gamma, ow=ow, fo=xw, c=c, ovf=ovf)
    x = ties(xw - 2, 100 * d, xw, rng).reshape(100, d).astype(np.float32)
    check_c(text, weights, x, tmp_path)


# -- multiplierless: no * or / between data-dependent values in MP layers ------------------------
def _strip(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.DOTALL)
    return re.sub(r"\b(?:const\s+)?u?int(?:8|16|32|64)_t\s*\*\s*\w+", "", code)   # pointer declarations


def test_mp_layers_have_no_multiply_or_divide(tmp_path):
    rng = np.random.default_rng(9)
    weights = {"k": rng.integers(-128, 128, (6, 2, 3, 3)).astype(np.int8),
               "b": rng.integers(-2048, 2048, (6, 1, 1)).astype(np.int16), **_gains(rng, 6, 2)}
    c, _, _, _ = render_c(parse(SPATIAL, weights))
    blocks = re.findall(r"multiplierless begin \*/(.*?)/\* multiplierless end", c, flags=re.DOTALL)
    assert len(blocks) == 1
    helpers = [re.search(rf"static int64_t {name}\(.*?\n}}\n", c, flags=re.DOTALL).group(0)
               for name in ("mpc_mp_alpha", "mpc_shl")]
    for code in blocks + helpers:
        body = _strip(code)
        # index arithmetic of window positions multiplies loop counters by constants: allowed, and
        # it appears only in the `int iy = ...`/`int ix = ...` lines and array subscripts
        data = re.sub(r"int i[xy] = [^;]*;", "", body)
        data = re.sub(r"\[[^\[\]]*\]", "[]", data)
        data = re.sub(r"\[[^\[\]]*\]", "[]", data)
        assert "*" not in data and "/" not in data, data


def test_emitted_folder_builds_with_make(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    from mpc.backends.c import write
    rng = np.random.default_rng(3)
    d, h = 5, 4
    w = {"w": rng.integers(-128, 128, (d, h)).astype(np.int8), "b": rng.integers(-99, 99, h).astype(np.int32)}
    g = parse(DENSE.format(d=d, h=h, ww=8, fw=6, bw=20, fa=12, xw=8, fx=6, aw=20, ovf="saturate", rnd="nearest",
                           fo=3), w)
    emitted = write(g, tmp_path)
    assert sorted(emitted.files) == ["c/Makefile", "c/main.c", "c/model.c", "c/model.h"]
    assert "int mpc_run(const int8_t *in, int8_t *out);" in (tmp_path / "c" / "model.h").read_text()
    p = subprocess.run(["make", "-s", "-C", str(tmp_path / "c")], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    model_c = (tmp_path / "c" / "model.c").read_text()
    assert "float" not in model_c and "double" not in model_c and "malloc" not in model_c
