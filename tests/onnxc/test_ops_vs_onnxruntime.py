"""The tensor, elementwise, logic and reduction ops against onnxruntime, on points ONNX's node cases leave out.

Each model (ONNX text syntax) runs through onnxruntime (the oracle), the interpreter, the torch lowering
and the model.py that `mpc convert` writes; integers and bools must agree exactly, floats to rounding.
Covered: integer wrap-around, Mod's two sign rules, Pow with mixed dtypes, reductions over several axes
with the axes as attribute or input, ties in ArgMax/ArgMin, Slice/Gather/Split/Pad on run-time data,
casts to integers and bool, variadic Sum/Mean/Max/Min with broadcasting, and integer shape computations
(Shape -> Equal -> Where -> Reshape) folded at import.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from mpc.cli import main
from mpc.frontend.onnx import import_model
from mpc.ir import run

I32 = np.array([2147483647, -2147483648, -7, 7, -8, 9], np.int32)
J32 = np.array([1, -1, 3, -3, 3, -4], np.int32)
X = np.random.default_rng(0).uniform(-2, 2, (2, 3, 4)).astype(np.float32)
TIES = np.array([[3, 1, 3, 0], [0, 0, 2, 2], [5, 5, 5, 5]], np.int32)


def _model(body: str, opset: int, consts: dict) -> onnx.ModelProto:
    model = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\n{body}')
    for name, a in consts.items():
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(a), name))
    keep = [vi for vi in model.graph.input if vi.name not in consts]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model


# id -> (graph text, opset, initializers, feeds)
CASES = {
    "int_wraparound": (("g (int32[6] a, int32[6] b) => (int32[6] s, int32[6] p, int32[6] d) "
                       "{ s = Add(a, b) p = Mul(a, a) d = Sub(b, a) }"), 17, {}, {"a": I32, "b": J32}),
    "mod_int": (("g (int32[6] a, int32[6] b) => (int32[6] m, int32[6] f) "
                "{ m = Mod(a, b) f = Mod <fmod = 1> (a, b) }"), 17, {}, {"a": I32, "b": J32}),
    "mod_float_fmod": ("g (float[2,3,4] x, float[4] y) => (float[2,3,4] f) { f = Mod <fmod = 1> (x, y) }", 17,
                       {}, {"x": X, "y": np.array([0.3, -0.7, 1.1, -2.5], np.float32)}),
    "pow_mixed": (("g (float[2,3,4] x, int64[4] e, int32[6] a, int32[6] b, int64[3] c, float[3] f) "
                  "=> (float[2,3,4] p, int32[6] q, int64[3] r) { p = Pow(x, e) q = Pow(a, b) r = Pow(c, f) }"), 17,
                  {}, {"x": X, "e": np.array([0, 1, 2, 3], np.int64), "a": np.array([2, -3, 5, 0, 7, -1], np.int32),
                       "b": np.array([3, 3, 2, 4, 0, 5], np.int32), "c": np.array([9, 16, 5], np.int64),
                       "f": np.array([0.5, 0.5, 1.5], np.float32)}),
    "reduce_axes_input": (("g (float[2,3,4] x) => (float[3] s, float[2,1,4] m, float[2,3] l, float[2,3,4] n) "
                          "{ s = ReduceSum <keepdims = 0> (x, ax) m = ReduceMax (x, one) "
                          "l = ReduceLogSumExp <keepdims = 0> (x, last) "
                          "n = ReduceMin <noop_with_empty_axes = 1> (x) }"), 18,
                          {"ax": np.array([0, -1], np.int64), "one": np.array([1], np.int64),
                           "last": np.array([2], np.int64)}, {"x": X}),
    "reduce_axes_attribute": (("g (float[2,3,4] x, int32[3,4] t) => (float[2,4] l2, float[1,1,1] mean, "
                              "float[3] ss, int32[4] pr, float[2,3,1,1] sp) "
                              "{ l2 = ReduceL2 <axes = [1], keepdims = 0> (x) mean = ReduceMean (x) "
                              "ss = ReduceSumSquare <axes = [0, 2], keepdims = 0> (x) "
                              "pr = ReduceProd <axes = [0], keepdims = 0> (t) "
                              "x4 = Unsqueeze(x, three) sp = ReduceMean <axes = [2, 3]> (x4) }"), 17,
                              {"three": np.array([3], np.int64)}, {"x": X, "t": TIES}),
    "reduce_rank2_no_axes": (("g (float[3,4] x) => (float[1,1] m, float[1,1] s) "
                             "{ m = ReduceMean(x) s = ReduceSum(x) }"), 18, {}, {"x": X[0]}),
    "arg_ties": (("g (int32[3,4] t) => (int64[3,1] a, int64[3] b, int64[1,4] c) "
                 "{ a = ArgMax <axis = 1, select_last_index = 1> (t) b = ArgMin <axis = -1, keepdims = 0> (t) "
                 "c = ArgMax (t) }"), 17, {}, {"t": TIES}),
    "slice_runtime": (("g (float[2,3,4] x) => (float[2,2,2] y, float[1,3,3] z) "
                      "{ y = Slice(x, st, en, ax, sp) z = Slice(x, st2, en2) }"), 17,
                      {"st": np.array([-1, 0], np.int64), "en": np.array([-2**63, 4], np.int64),
                       "ax": np.array([1, -1], np.int64), "sp": np.array([-2, 2], np.int64),
                       "st2": np.array([1, 0, 1], np.int64), "en2": np.array([9, 3, 4], np.int64)}, {"x": X}),
    "split": (("g (float[2,7] x) => (float[2,3] a, float[2,3] b, float[2,1] c) "
              "{ a, b, c = Split <axis = 1, num_outputs = 3> (x) }"), 18, {},
              {"x": np.arange(14, dtype=np.float32).reshape(2, 7)}),
    "split_sizes": ("g (float[2,3,4] x) => (float[2,1,4] a, float[2,2,4] b) { a, b = Split <axis = -2> (x, s) }",
                    13, {"s": np.array([1, 2], np.int64)}, {"x": X}),
    "gather_runtime": (("g (float[2,3,4] x, int64[2,2] i, int32[2,3,4] e) => (float[2,2,2,4] y, float[2,3,4] z) "
                       "{ y = Gather <axis = 1> (x, i) z = GatherElements <axis = 2> (x, e) }"), 17, {},
                       {"x": X, "i": np.array([[0, -1], [2, 1]], np.int64),
                        "e": np.random.default_rng(1).integers(-4, 4, (2, 3, 4)).astype(np.int32)}),
    "pad": (("g (float[2,3,4] x) => (float[2,5,7] c, float[2,5,7] r, float[2,5,7] e, float[2,3,6] a) "
            "{ c = Pad(x, p, v) r = Pad <mode = \"reflect\"> (x, p) e = Pad <mode = \"edge\"> (x, p) "
            "a = Pad(x, p2, v, ax) }"), 18,
            {"p": np.array([0, 1, 2, 0, 1, 1], np.int64), "v": np.array(0.5, np.float32),
             "p2": np.array([1, 1], np.int64), "ax": np.array([-1], np.int64)}, {"x": X}),
    "cast": (("g (float[2,3,4] x, float[2,3,4] like) => (int32[2,3,4] i, bool[2,3,4] b, double[2,3,4] d, "
             "int64[2,3,4] k) { i = Cast <to = 6> (x) b = Cast <to = 9> (i) d = Cast <to = 11> (x) "
             "k = CastLike(d, t) }"), 17, {"t": np.array([1], np.int64)}, {"x": X * 3, "like": X}),
    "variadic": (("g (float[2,3,4] x, float[3,1] y, float[4] z) => (float[2,3,4] s, float[2,3,4] m, "
                 "float[2,3,4] hi, float[2,3,4] lo, float[2,3,4] one) "
                 "{ s = Sum(x, y, z) m = Mean(x, y, z) hi = Max(x, y, z) lo = Min(x, y, z) one = Sum(x) }"), 17,
                 {}, {"x": X, "y": X[0, :, :1], "z": X[1, 0]}),
    "logic_where": (("g (float[2,3,4] x, float[3,1] y, int64[4] a, int64[4] b) => (float[2,3,4] w, bool[4] e, "
                    "bool[2,3,4] n) { c = Less(x, y) w = Where(c, x, y) e = Equal(a, b) "
                    "g2 = GreaterOrEqual(x, y) l = LessOrEqual(x, y) o = Or(g2, c) x2 = Xor(o, l) "
                    "n = Not(x2) }"), 17, {},
                    {"x": X, "y": X[0, :, :1], "a": np.array([1, 2, 3, 4], np.int64),
                     "b": np.array([1, 0, 3, 0], np.int64)}),
    "expand_tile": ("g (float[3,1] y) => (float[2,3,4] e, float[6,2] t) { e = Expand(y, s) t = Tile(y, r) }", 17,
                    {"s": np.array([2, 1, 4], np.int64), "r": np.array([2, 2], np.int64)}, {"y": X[0, :, :1]}),
    "float16_arith": (("g (float[2,3,4] x) => (float16[2,3,4] d, float16[2,3] r, float16[2,3,4] w) "
                       "{ y = CastLike(x, h) s = Add(y, h) m = Mul(s, h) d = Div(m, h2) "
                       "r = ReduceSum <keepdims = 0> (d, last) w = Pow(y, two) }"), 17,
                      {"h": np.array([0.5, -1.25, 3.0, 0.1], np.float16),
                       "h2": np.array([[7.0], [-0.3], [2.0]], np.float16), "last": np.array([2], np.int64),
                       "two": np.array(2, np.int32)}, {"x": X}),
    "unary": (("g (float[8] x) => (float[8] r, float[8] s, float[8] f, float[8] c, float[8] q, float[8] a) "
              "{ r = Round(x) s = Sign(x) f = Floor(x) c = Ceil(x) ab = Abs(x) q = Sqrt(ab) a = Reciprocal(x) }"),
              17, {}, {"x": np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.7, 3.2, -0.25], np.float32)}),
    "folded_shape_chain": (("g (float[2,3,4] x) => (float[6,4] y, int64[3] r) "
                           "{ s = Shape(x) e = Equal(s, three) w = Where(e, minus, s) f = Gather(w, idx) "
                           "n = Neg(minus1) t = Concat <axis = 0> (n, f) y = Reshape(x, t) "
                           "r = Range(zero, ten, step) }"), 17,
                           {"three": np.array([3, 3, 3], np.int64), "minus": np.array([-1, -1, -1], np.int64),
                            "idx": np.array([2], np.int64), "minus1": np.array([1], np.int64),
                            "zero": np.array(0, np.int64), "ten": np.array(10, np.int64),
                            "step": np.array(4, np.int64)}, {"x": X}),
}


def _ort(model, feeds) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return dict(zip(names, sess.run(names, feeds)))


def _same(got, want, what: str) -> None:
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.dtype, want.shape)
    if want.dtype.kind == "f":   # float16: one unit in the last place (2^-10) for a sum of rounded terms
        tol = 2e-3 if want.dtype == np.float16 else 2e-6
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol / 2, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def _case(name):
    body, opset, consts, feeds = CASES[name]
    model = _model(body, opset, consts)
    return model, feeds, _ort(model, feeds)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_and_torch_match_onnxruntime(name):
    torch = pytest.importorskip("torch")
    from mpc.backends.torch_backend import lower
    model, feeds, ref = _case(name)
    graph = import_model(model, "m")[0]
    got = run(graph, feeds)
    with torch.no_grad():
        lowered = lower(graph, trainable=False)({k: torch.from_numpy(v) for k, v in feeds.items()})
    for k, want in ref.items():
        _same(got[k], want, f"{name} {k} (interpreter)")
        _same(lowered[k].numpy(), want, f"{name} {k} (torch)")


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_py_matches_onnxruntime(tmp_path, capsys, name):
    model, feeds, ref = _case(name)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    rc = main(["convert", str(path), "--target", "float", "-o", str(tmp_path / "out"), "-q"])
    assert rc == 0, capsys.readouterr().err
    spec = importlib.util.spec_from_file_location(f"_onnxc_ort_{name}", tmp_path / "out" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    got = module.run(feeds)
    for k, want in ref.items():
        _same(got[k], want, f"{name} {k} (model.py)")


def test_integer_shape_computations_fold_at_import():
    """Shape -> Equal -> Where -> Gather -> Concat -> Reshape and Range leave only the reshape (and the
    output identity of the folded Range) in the IR."""
    model, _feeds, ref = _case("folded_shape_chain")
    graph = import_model(model, "m")[0]
    assert sorted(op.kind for op in graph.ops) == ["nn.identity", "nn.reshape"]
    np.testing.assert_array_equal(ref["r"], [0, 4, 8])


@pytest.mark.parametrize("delta", [0, 0.0])
def test_range_of_zero_step_is_one_error_line(delta):
    from mpc.errors import UnsupportedOp
    dtype = np.int64 if isinstance(delta, int) else np.float32
    model = _model("g (float[1] x) => (float[1] y) { r = Range(a, b, d) y = Identity(x) }", 17,
                   {"a": np.array(0, dtype), "b": np.array(5, dtype), "d": np.array(delta, dtype)})
    with pytest.raises(UnsupportedOp, match="has no finite length"):
        import_model(model, "m")


def test_mod_signs_follow_the_definition():
    """Independent of onnxruntime: fmod=0 takes the divisor's sign (Python %), fmod=1 the dividend's (C fmod)."""
    model, feeds, _ = _case("mod_int")
    got = run(import_model(model, "m")[0], feeds)
    pairs = list(zip(feeds["a"].tolist(), feeds["b"].tolist()))
    assert got["m"].tolist() == [x % y for x, y in pairs]
    assert got["f"].tolist() == [int(np.sign(x)) * (abs(x) % abs(y)) for x, y in pairs]
