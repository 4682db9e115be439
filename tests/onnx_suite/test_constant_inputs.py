"""Inputs that must be known at import (bounds, ratio, axes, shape): folded when they are computed from
constants only, one `mpc: error:` line naming the input and its graph input when they are not.
Numbers are checked against onnxruntime on the source model."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from cli_helpers import error_line, run_cli
from frontend import models as M

from mpc.errors import NeedsConstant
from mpc.frontend import load_onnx
from mpc.ir import run

FOLDED = """
g (float[N, 6] x) => (float[N, 6] y) {
    lo = Sub (a, b)
    hi = Mul (c, d)
    k = Add (e, f)
    clipped = Clip (x, lo, hi)
    t = Unsqueeze (clipped, k)
    y = Squeeze (t, k)
}"""
CONSTS = {"a": np.float32(0.25), "b": np.float32(0.5), "c": np.float32(0.5), "d": np.float32(1.5),
          "e": np.array([1], np.int64), "f": np.array([1], np.int64)}


def test_bounds_computed_from_constants_are_folded_and_match_onnxruntime():
    model = M.build(FOLDED.replace("g (float[N, 6] x)", "g (float[N, 6] x, float[] a, float[] b, float[] c, float[] d, "
                                   "int64[1] e, int64[1] f)"), consts=CONSTS)
    loaded = load_onnx(model.SerializeToString())
    clip = next(op for op in loaded.graph.ops if op.kind == "nn.clip")
    assert (clip.attrs.min, clip.attrs.max) == (-0.25, 0.75)   # 0.25 - 0.5, 0.5 * 1.5: exact in float32
    x = np.random.default_rng(0).uniform(-2, 2, (5, 6)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = run(loaded.graph, {"x": x})["y"]
    np.testing.assert_array_equal(got, ref)
    assert got.min() == np.float32(-0.25) and got.max() == np.float32(0.75)


DYNAMIC = """
g (float[N, 6] x, float m) => (float y) {
    two = Constant <value = float {2.0}> ()
    lo = Mul (m, two)
    y = Clip (x, lo)
}"""


def test_a_bound_computed_from_a_graph_input_is_named(tmp_path, capsys):
    model = M.build(DYNAMIC, open_outputs=True)
    with pytest.raises(NeedsConstant) as e:
        load_onnx(model.SerializeToString())
    assert e.value.input_name == "lo" and e.value.sources == ("m",) and e.value.op_type == "Clip"
    path = tmp_path / "dyn.onnx"
    path.write_bytes(model.SerializeToString())
    rc, _, err = run_cli(capsys, "convert", path, "--target", "float", "-o", tmp_path / "out")
    assert rc == 2 and not (tmp_path / "out").exists()
    assert error_line(err) == ("unsupported op 'Clip' at node 'Clip_2': min (input 'lo') must be a constant, but "
                               "it is computed at run time from graph input 'm': mpc fixes it at import "
                               "(attributes and shapes are static in the IR)")
