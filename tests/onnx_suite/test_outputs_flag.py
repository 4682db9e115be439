"""`--outputs NAME,...`: keep only some outputs of an ONNX model, so that a scikit-learn MLPClassifier
exported by skl2onnx converts without its ai.onnx.ml post-processing (ZipMap, ArrayFeatureExtractor).
The converted model is checked against onnxruntime on the whole, unpruned source model."""
from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from cli_helpers import error_line, run_cli

from mpc.frontend import load_mpc, load_onnx
from mpc.ir import run

pytest.importorskip("skl2onnx")


@pytest.fixture(scope="module")
def sklearn_mlp(tmp_path_factory):
    """A small MLPClassifier on 3 separable classes, exported with and without ZipMap, and its data."""
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # sklearn's ConvergenceWarning on a deliberately short fit
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0).fit(x, y)
    root = tmp_path_factory.mktemp("skl")
    (root / "plain.onnx").write_bytes(to_onnx(clf, x[:1], options={"zipmap": False}).SerializeToString())
    (root / "zipmap.onnx").write_bytes(to_onnx(clf, x[:1]).SerializeToString())
    np.savez(root / "data.npz", X=x, labels=y)
    return root, x


def _model_py(folder):
    spec = importlib.util.spec_from_file_location(f"_skl_{folder.name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _onnxruntime(path, x, name):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run([name], {"X": x})[0]


@pytest.mark.parametrize("target", ["float", "mp"])
def test_probabilities_convert_and_verify(sklearn_mlp, tmp_path, capsys, target):
    root, x = sklearn_mlp
    out = tmp_path / target
    rc, _, err = run_cli(capsys, "convert", root / "plain.onnx", "--target", target, "--outputs", "probabilities",
                         "--calib", root / "data.npz", "-o", out, "-q")
    assert rc == 0, err
    # model.py for float; for mp the interpreter on model.mpc (model.py would compile the MP kernels with
    # numba, tens of seconds on a loaded 2-core machine, and tests/mp checks model.py against it already)
    got = _model_py(out).run({"X": x})["probabilities"] if target == "float" else \
        run(load_mpc(str(out / "model.mpc")).graph, {"X": x})["probabilities"]
    ref = _onnxruntime(root / "plain.onnx", x, "probabilities")   # the whole model, label path included
    agree = (got.argmax(1) == ref.argmax(1)).mean()
    if target == "float":
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    else:   # multiplierless: approximate, but it must still classify like the source
        assert agree >= 0.9 and np.abs(got - ref).max() < 0.5
    rc, stdout, err = run_cli(capsys, "verify", root / "plain.onnx", "--target", target, "--outputs",
                              "probabilities", "--data", root / "data.npz", "--calib", root / "data.npz", "--json")
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["samples"] == 240 and r["top1_agreement"] == pytest.approx(agree, abs=0.02)
    if target == "float":
        assert r["max_abs_err"] < 1e-5


def test_zipmap_is_refused_with_a_hint_and_an_inner_tensor_can_be_kept(sklearn_mlp, tmp_path, capsys):
    root, x = sklearn_mlp
    rc, _, err = run_cli(capsys, "convert", root / "zipmap.onnx", "--target", "float", "-o", tmp_path / "a")
    assert rc == 2 and "domain 'ai.onnx.ml' is not supported" in error_line(err) and "--outputs" in err
    rc, _, err = run_cli(capsys, "inspect", root / "zipmap.onnx", "--outputs", "nope")
    assert rc == 2 and error_line(err).startswith("--outputs: 'nope' is not a graph output or a tensor computed by")
    rc, _, err = run_cli(capsys, "convert", root / "zipmap.onnx", "--target", "float", "--outputs",
                         "out_activations_result", "-o", tmp_path / "b", "-q")
    assert rc == 0, err
    got = _model_py(tmp_path / "b").run({"X": x})["out_activations_result"]
    ref = _onnxruntime(root / "plain.onnx", x, "probabilities")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_what_no_longer_feeds_the_kept_outputs_is_dropped(tmp_path):
    from frontend import models as M

    from mpc.frontend.onnx import keep_outputs
    model = M.build("""
    g (float[N, 4] x, float[N, 4] z) => (float[N, 4] a, float[N, 4] b) {
        s = Sigmoid (x)
        a = Relu (s)
        t = Mul (s, z)
        b = Tanh (t)
    }""")
    keep_outputs(model, ("a",), "m.onnx")
    assert [o.name for o in model.graph.output] == ["a"] and [i.name for i in model.graph.input] == ["x"]
    assert [n.op_type for n in model.graph.node] == ["Sigmoid", "Relu"]
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    got = run(load_onnx(model.SerializeToString()).graph, {"x": x})["a"]
    np.testing.assert_allclose(got, np.maximum(1 / (1 + np.exp(-x.astype(np.float64))), 0), rtol=1e-6)
