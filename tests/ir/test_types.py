"""Parametric element types: text, storage container, range; round trips, parse errors, weight checks.

Covers every type family of the text form (f*, i<W>, u<W>, bool, fx<W,F>, ufx<W,F>), the errors a bad
type gets (FILE:LINE:COL, what was expected), the verifier's check of stored weights against their
declared type, and `mpc inspect` / `mpc ops` on a hand-written graph that uses them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mpc.cli import main
from mpc.errors import BadInput, ParseError, VerifyError
from mpc.ir import DType, Graph, TensorType, parse, print_graph, run, verify_graph
from mpc.ir.printer import format_literal

DATA = Path(__file__).parent / "data"
FAMILIES = ["f16", "f32", "f64", "i1", "i4", "i8", "i16", "i33", "i64", "u1", "u3", "u8", "u64", "bool",
            "fx<8,6>", "fx<12,4>", "fx<8,-2>", "fx<4,10>", "fx<64,63>", "ufx<8,8>", "ufx<1,0>", "ufx<64,-3>"]


def _fill(dtype: DType, shape, rng: np.random.Generator) -> np.ndarray:
    """Random values over the whole range of `dtype`, in its container."""
    if dtype.int_range is None:
        return rng.standard_normal(shape).astype(dtype.numpy)
    lo, hi = dtype.int_range
    info = np.iinfo(np.int64)
    return rng.integers(max(lo, info.min), min(hi, info.max), size=shape, endpoint=True).astype(dtype.numpy)


# -- the type itself ----------------------------------------------------------------------
@pytest.mark.parametrize("text", FAMILIES)
def test_type_text_round_trips(text):
    assert str(DType.parse(text)) == text


@pytest.mark.parametrize("text, container, lo, hi", [
    ("i1", "int8", -1, 0), ("i4", "int8", -8, 7), ("i8", "int8", -128, 127), ("i9", "int16", -256, 255),
    ("i33", "int64", -2 ** 32, 2 ** 32 - 1), ("u3", "uint8", 0, 7), ("u16", "uint16", 0, 65535),
    ("u17", "uint32", 0, 2 ** 17 - 1), ("u64", "uint64", 0, 2 ** 64 - 1), ("bool", "bool", 0, 1),
    ("fx<8,6>", "int8", -128, 127), ("fx<12,4>", "int16", -2048, 2047), ("ufx<12,4>", "uint16", 0, 4095),
])
def test_container_and_range(text, container, lo, hi):
    t = DType.parse(text)
    assert t.numpy == np.dtype(container)
    assert t.int_range == (lo, hi)


def test_fixed_point_real_range_and_resolution():
    t = DType.parse("fx<8,6>")
    assert t.resolution == 2.0 ** -6
    assert t.real_range == (-2.0, 127 / 64)
    assert DType.parse("fx<8,-2>").real_range == (-512.0, 508.0)  # F < 0: steps of 4
    assert DType.parse("ufx<4,10>").real_range == (0.0, 15 / 1024)  # F > W: all fraction
    assert DType.f32.real_range is None and DType.f32.int_range is None and DType.i8.resolution is None


def test_floats_and_compat_names():
    assert [str(t) for t in (DType.f16, DType.f32, DType.f64)] == ["f16", "f32", "f64"]
    assert DType.f32 == DType.parse("f32") and DType.f32.value == "f32"
    assert DType.from_numpy(np.uint16) == DType.u16 and DType.from_numpy(np.float16) == DType.f16
    assert TensorType.of(np.zeros((2, 3), np.int8)) == TensorType(DType.i8, (2, 3))
    with pytest.raises(ValueError, match="no IR dtype"):
        DType.from_numpy(np.complex64)


def test_type_valued_attribute_prints_back():
    assert format_literal(DType.f64) == "f64"
    assert format_literal(DType.parse("fx<8,6>")) == '"fx<8,6>"'  # not an identifier: a string literal


# -- text form ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", FAMILIES)
def test_graph_round_trip_per_family(text):
    src = (f"graph @g(%x: {text}[N,4]) -> (%y: {text}[4,N], %w: {text}[2,2]) {{\n"
           f"  weight @w : {text}[4]\n"
           f"  %y = nn.transpose(%x) {{perm = [1, 0]}} : {text}[4,N]\n"
           f"  %w = nn.reshape(@w) {{shape = [2, 2]}} : {text}[2,2]\n"
           "}\n")
    rng = np.random.default_rng(0)
    g = parse(src, lambda name, t: _fill(t.dtype, t.shape, rng))
    printed = print_graph(g)
    assert printed == src
    assert print_graph(parse(printed, g.weights)) == printed
    assert g.weight("w").type == TensorType(DType.parse(text), (4,))
    out = run(g, {"x": _fill(DType.parse(text), (3, 4), rng)})
    assert out["y"].shape == (4, 3) and out["w"].dtype == DType.parse(text).numpy


@pytest.mark.parametrize("bad, col, message", [
    ("fx<8>", 15, "fx takes 2 parameters <width,frac>, got 1"),
    ("fx<8,2,1>", 15, "fx takes 2 parameters <width,frac>, got 3"),
    ("fx<>", 17, "empty parameter list after 'fx'"),
    ("i0", 15, "i width must be 1..64, got 0"),
    ("i65", 15, "i width must be 1..64, got 65"),
    ("u0", 15, "u width must be 1..64, got 0"),
    ("fx<70,3>", 18, "fx width must be 1..64, got 70"),
    ("ufx<0,3>", 19, "ufx width must be 1..64, got 0"),
    ("f8", 15, "float width must be 16, 32 or 64, got 8"),
    ("i8<3>", 15, "element type 'i8' takes no parameters"),
    ("q7", 15, "unknown element type 'q7' (expected f16, f32, f64, i<W>, u<W>, bool, fx<W,F> or ufx<W,F>)"),
])
def test_bad_type_errors_cite_line_and_column(bad, col, message):
    src = ("graph @g(%x: f32[4]) -> (%y: f32[4]) {\n"
           "  %y = nn.relu(%x) : f32[4]\n"
           f"  weight @w : {bad}[4]\n"
           "}\n")
    with pytest.raises(ParseError) as info:
        parse(src, {"w": np.zeros(4, np.int8)}, filename="model.mpc")
    assert str(info.value) == f"model.mpc:3:{col}: {message}"


# -- weights against their declared type --------------------------------------------------
@pytest.mark.parametrize("text, values, ok", [
    ("i4", np.array([-8, 7], np.int8), True),
    ("i4", np.array([-8, 8], np.int8), False),
    ("i4", np.array([-9, 0], np.int8), False),
    ("u3", np.array([0, 7], np.uint8), True),
    ("u3", np.array([0, 8], np.uint8), False),
    ("fx<8,6>", np.array([-128, 127], np.int8), True),
    ("fx<12,4>", np.array([-2048, 2047], np.int16), True),
    ("fx<12,4>", np.array([-2049, 0], np.int16), False),
    ("fx<12,4>", np.array([0, 2048], np.int16), False),
    ("ufx<4,4>", np.array([0, 16], np.uint8), False),
])
def test_weight_values_checked_against_declared_range(text, values, ok):
    src = f"graph @g() -> (@w: {text}[2]) {{\n  weight @w : {text}[2]\n}}\n"
    if ok:
        assert parse(src, {"w": values}).weight("w").type == TensorType(DType.parse(text), (2,))
        return
    with pytest.raises(ParseError, match=r"<text>:2:10: weight @w is declared .* but holds values in \[.*\], "
                                         r"outside \[-?\d+, \d+\]"):
        parse(src, {"w": values})


@pytest.mark.parametrize("text, array", [("fx<12,4>", np.zeros(2, np.int8)), ("i4", np.zeros(2, np.int16)),
                                         ("u8", np.zeros(2, np.int8)), ("f16", np.zeros(2, np.float32))])
def test_weight_container_must_match(text, array):
    src = f"graph @g() -> (@w: {text}[2]) {{\n  weight @w : {text}[2]\n}}\n"
    with pytest.raises(ParseError, match=f"stored as {DType.parse(text).numpy.name}.* but holds {array.dtype.name}"):
        parse(src, {"w": array})


def test_verifier_checks_declared_weight_type():
    g = Graph("g")
    w = g.add_weight("w", np.array([1, 7], np.int8), dtype=DType.parse("i4"))
    g.outputs.append(w)
    verify_graph(g)
    assert w.type == TensorType(DType.parse("i4"), (2,))
    with pytest.raises(VerifyError, match="outside \\[-8, 7\\]"):
        g.add_weight("w2", np.array([1, 8], np.int8), dtype=DType.parse("i4"))
    g.outputs.append(g.add_weight("w3", np.array([1, 8], np.int8)))
    g._weights["w3"] = np.array([1, 2], np.int16)  # a broken table: the verifier names the weight
    with pytest.raises(VerifyError, match="weight @w3 is declared i8\\[2\\] .* but holds int16"):
        verify_graph(g)


def test_inputs_checked_against_range():
    g = parse("graph @g(%x: u3[2]) -> (%x: u3[2]) {\n}\n")
    run(g, {"x": np.array([0, 7], np.uint8)})
    with pytest.raises(BadInput, match="input 'x' of type u3\\[2\\] holds values in \\[0, 9\\], outside \\[0, 7\\]"):
        run(g, {"x": np.array([0, 9], np.uint8)})


@pytest.mark.parametrize("op", ["nn.add(%x, %x)", "nn.cast(%x) {to = f32}"])
def test_nn_arithmetic_rejects_fixed_point(op):
    src = f"graph @g(%x: fx<8,6>[2]) -> (%y: fx<8,6>[2]) {{\n  %y = {op} : fx<8,6>[2]\n}}\n"
    with pytest.raises(VerifyError, match="fixed point fx<8,6> is not defined"):
        parse(src)


# -- the CLI on a hand-written v2 graph ----------------------------------------------------
def _v2_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"fc0.w": rng.standard_normal((16, 8)).astype(np.float32),
            "fc0.b": rng.standard_normal(8).astype(np.float32),
            "q.w": _fill(DType.parse("fx<8,6>"), (16, 8), rng),
            "idx": _fill(DType.i16, (4,), rng),
            "mask": _fill(DType.u8, (8,), rng)}


def test_inspect_prints_and_reparses_v2_graph(tmp_path, capsys):
    model = tmp_path / "v2_types.mpc"
    shutil.copy(DATA / "v2_types.mpc", model)
    weights = _v2_weights()
    np.savez(tmp_path / "weights.npz", **weights)
    assert main(["inspect", str(model)]) == 0
    out = capsys.readouterr().out
    assert out == model.read_text()
    g = parse(out, weights)
    assert print_graph(g) == out
    assert g.weight("q.w").type == TensorType(DType.parse("fx<8,6>"), (16, 8))
    x = np.random.default_rng(1).standard_normal((3, 2, 16)).astype(np.float32)
    res = run(g, {"x": x})
    ref = np.einsum("tnd,dh->tnh", x.astype(np.float64), weights["fc0.w"].astype(np.float64)) + weights["fc0.b"]
    np.testing.assert_allclose(res["y"], np.maximum(ref, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res["q"], weights["q.w"].T)
    np.testing.assert_array_equal(res["f"], weights["idx"].reshape(2, 2).astype(np.float64))


def test_ops_lists_kinds(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "nn.conv2d" in out and "nn.cast" in out
