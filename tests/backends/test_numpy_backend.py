"""The NumPy backend: the generated model.py, imported from the folder `mpc convert` wrote, must
match onnxruntime on the source model, for the canonicalized graph and for the graph as imported
(so that gemm, batchnorm, flatten and friends are rendered too). An op kind without a renderer is
refused by name.
"""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from frontend import models as M  # tests/frontend/models.py (pytest puts tests/ on sys.path)
from mpc.backends.numpy_backend import render_model

from mpc.cli import main
from mpc.errors import UnsupportedOp
from mpc.ir import define, fresh_registry, known_kinds, parse

TOL = 2e-5

MODELS = {
    "cnn_bn_pool": M.cnn,
    "shapes_mix": M.shapes_mix,
    "matmul_add": M.matmul_add,
    "gemm_plain": lambda: M.gemm(0, 0, 1.0, 1.0, None),
    "gemm_tt_row_bias": lambda: M.gemm(1, 1, 0.5, 2.0, (5,)),
    "gemm_tb_full_bias": lambda: M.gemm(0, 1, -1.5, 0.25, (4, 5)),
    "gemm_ta_col_bias": lambda: M.gemm(1, 0, 2.0, -1.0, (4, 1)),
    "conv_strided_grouped": lambda: M.conv("strides = [2, 2], pads = [1, 0, 2, 1], group = 2",
                                           w_shape=(6, 2, 3, 3)),
    "conv_dilated_nobias": lambda: M.conv("dilations = [2, 2]", bias=False),
    "maxpool_ceil": lambda: M.pool("MaxPool", "kernel_shape = [3, 3], strides = [2, 2], ceil_mode = 1"),
    "avgpool_pads": lambda: M.pool("AveragePool", "kernel_shape = [3, 3], pads = [1, 1, 1, 1], "
                                                  "count_include_pad = 1"),
    "leaky_relu": lambda: M.unary("LeakyRelu", "alpha = 0.2"),
}


def _import(folder: Path):
    """Import `folder/model.py` as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"_generated_{folder.parent.name}_{folder.name}",
                                                  folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


@pytest.mark.parametrize("name, passes", itertools.product(sorted(MODELS), ["canonicalize", "dce"]))
def test_model_py_matches_onnxruntime(tmp_path, capsys, name, passes):
    model = MODELS[name]()
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out"
    rc = main(["convert", str(path), "--target", "float", "--passes", passes, "-o", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    feeds = M.feeds_for(model, batch=3, seed=7)
    refs = _ort(model, feeds)
    got = _import(out).run(dict(feeds))
    assert sorted(got) == sorted(refs)
    for k, ref in refs.items():
        out_k = np.asarray(got[k])
        assert out_k.shape == ref.shape and out_k.dtype == ref.dtype, (k, out_k.shape, out_k.dtype)
        err = np.abs(out_k.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref.astype(np.float64)))
        assert float(err.max(initial=0.0)) <= TOL, f"{k}: max relative error {err.max()}"


def test_imported_graph_renders_the_raw_ops(tmp_path):
    """With --passes dce nothing is lowered, so the raw kinds reach the backend."""
    path = tmp_path / "cnn.onnx"
    onnx.save(M.cnn(), str(path))
    argv = ["convert", str(path), "--target", "float", "--passes", "dce", "-o", str(tmp_path / "out"), "-q"]
    assert main(argv) == 0
    text = (tmp_path / "out" / "model.mpc").read_text()
    for kind in ("nn.conv2d", "nn.batchnorm", "nn.maxpool2d", "nn.flatten", "nn.gemm"):
        assert kind in text


def test_model_py_rejects_wrong_input_shape(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(M.matmul_add(), str(path))
    assert main(["convert", str(path), "--target", "float", "-o", str(tmp_path / "out"), "-q"]) == 0
    module = _import(tmp_path / "out")
    with pytest.raises(ValueError, match="'x'"):
        module.run({"x": np.zeros((2, 15), np.float32)})
    with pytest.raises(ValueError, match="missing input 'x'"):
        module.run({"nope": np.zeros((2, 16), np.float32)})


# -- an op kind the backend cannot render -------------------------------------------------
@pytest.fixture
def noop_kind():
    """A test-only op kind with verifier and kernel but no NumPy rendering, in a fresh op registry."""
    with fresh_registry():
        define("test.noop", ("x",), "test only: identity without a backend rendering",
               lambda types, attrs: [types[0]], lambda k, x: x)
        yield
    assert "test.noop" not in known_kinds()


NOOP = """graph @g(%x: f32[N,4]) -> (%y: f32[N,4]) {
  %0 = nn.relu(%x) : f32[N,4]
  %y = test.noop(%0) : f32[N,4]
}
"""


def test_unrenderable_op_kind_is_unsupported(noop_kind):
    with pytest.raises(UnsupportedOp) as e:
        render_model(parse(NOOP, {}))
    assert str(e.value) == "unsupported op 'test.noop' at <text>:3:3: the numpy backend has no rendering for this op kind"
    assert e.value.op_type == "test.noop"


def test_unrenderable_op_kind_through_the_cli(tmp_path, capsys, noop_kind):
    (tmp_path / "noop.mpc").write_text(NOOP)
    capsys.readouterr()
    rc = main(["convert", str(tmp_path / "noop.mpc"), "--target", "float", "-o", str(tmp_path / "out")])
    stdout, err = capsys.readouterr()
    assert rc == 2 and stdout == ""
    assert err == (f"mpc: error: unsupported op 'test.noop' at {tmp_path / 'noop.mpc'}:3:3: the numpy backend has "
                   "no rendering for this op kind\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noop.mpc"]


# -- time-major [T,N,C,H,W] windows -------------------------------------------------------
def _windows_graph(lead: str) -> str:
    """Convs and pools over [<lead>C,H,W]: a fused conv+relu+pool, a conv that stays unfused (it is an
    output and has another user), an average pool over it and an MP conv."""
    def t(c: int, hw: int) -> str:
        return f"f32[{lead}{c},{hw},{hw}]"
    return (f"graph @g(%x: {t(2, 6)}) -> (%y: {t(3, 3)}, %z: {t(3, 6)}, %a: {t(3, 3)}, %m: {t(3, 6)}) {{\n"
            "  weight @w : f32[3,2,3,3]\n  weight @b : f32[3]\n  weight @gain : f32[3]\n"
            f"  %0 = nn.conv2d(%x, @w, @b) {{pads = [1, 1, 1, 1]}} : {t(3, 6)}\n"
            f"  %1 = nn.relu(%0) : {t(3, 6)}\n"
            f"  %y = nn.maxpool2d(%1) {{kernel = [2, 2], strides = [2, 2]}} : {t(3, 3)}\n"
            f"  %z = nn.conv2d(%x, @w) {{pads = [1, 1, 1, 1]}} : {t(3, 6)}\n"
            f"  %a = nn.avgpool2d(%z) {{kernel = [2, 2], strides = [2, 2]}} : {t(3, 3)}\n"
            f"  %m = mp.conv2d(%x, @w, @gain) {{gamma = 2.0, pads = [1, 1, 1, 1]}} : {t(3, 6)}\n}}\n")


def _convert_text(tmp_path: Path, name: str, text: str, weights: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "g.mpc").write_text(text)
    np.savez(folder / "weights.npz", **weights)
    assert main(["convert", str(folder / "g.mpc"), "--target", "float", "-o", str(folder / "out"), "-q"]) == 0
    return folder / "out"


def test_time_major_windows_fold_into_the_batch(tmp_path):
    """model.py runs conv/pool ops on [T,N,C,H,W] by folding T into the batch: the float outputs match
    torch (float64) on the folded input, the MP conv matches the [N,C,H,W] model.py on that input."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    weights = {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
               "b": rng.standard_normal(3).astype(np.float32), "gain": rng.uniform(0.5, 1.5, 3).astype(np.float32)}
    out5 = _convert_text(tmp_path, "tm", _windows_graph("T,N,"), weights)
    out4 = _convert_text(tmp_path, "nchw", _windows_graph("N,"), weights)
    x = rng.standard_normal((2, 3, 2, 6, 6)).astype(np.float32)
    got = _import(out5).run({"x": x})
    flat = x.reshape(6, 2, 6, 6)
    w, b = (torch.from_numpy(weights[k]).double() for k in ("w", "b"))
    conv = F.conv2d(torch.from_numpy(flat).double(), w, padding=1)
    refs = {"y": F.max_pool2d(torch.relu(conv + b.reshape(1, -1, 1, 1)), 2), "z": conv,
            "a": F.avg_pool2d(conv, 2)}
    for k, ref in refs.items():
        assert got[k].shape == (2, 3) + ref.shape[1:] and got[k].dtype == np.float32, k
        np.testing.assert_allclose(got[k].reshape(ref.shape), ref.numpy(), rtol=TOL, atol=TOL, err_msg=k)
    m4 = _import(out4).run({"x": flat})["m"]
    np.testing.assert_allclose(got["m"].reshape(m4.shape), m4, rtol=TOL, atol=TOL)
    text = (out5 / "model.py").read_text()
    assert "conv2d_fused(v_x.reshape((-1, ) + v_x.shape[-3:]), " in text    # the fused call, folded


def test_time_major_pool_with_symbolic_channels(tmp_path):
    """A pool over [T,N,C,H,W] with a symbolic C keeps C from the operand's shape when unfolding."""
    text = ("graph @g(%x: f32[T,N,C,4,4]) -> (%y: f32[T,N,C,2,2]) {\n"
            "  %y = nn.maxpool2d(%x) {kernel = [2, 2], strides = [2, 2]} : f32[T,N,C,2,2]\n}\n")
    out = _convert_text(tmp_path, "pool", text, {})
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 4, 4)).astype(np.float32)
    got = _import(out).run({"x": x})["y"]
    ref = x.reshape(2, 3, 5, 2, 2, 2, 2).max(axis=(4, 6))   # 2x2 windows, stride 2, from the definition
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)
