"""The MP target end to end: accuracy against onnxruntime on the shipped digits models, the
multiplierless structure of the result, flags, errors, and the generated model.py."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mpc.cli import main
from mpc.driver.compiler import Settings, compile_model
from mpc.ir import parse, print_graph

EX = "examples"
MLP, CNN = f"{EX}/models/digits_mlp.onnx", f"{EX}/models/digits_cnn.onnx"
MLP_DATA = (f"{EX}/data/digits_train.npz", f"{EX}/data/digits_test.npz")
CNN_DATA = (f"{EX}/data/digits_img_train.npz", f"{EX}/data/digits_img_test.npz")
DENSE = ("nn.matmul", "nn.conv2d", "nn.gemm")
MULTIPLY = DENSE + ("nn.mul", "nn.div", "nn.batchnorm")   # ops that multiply (or divide) data by an operand


def ort_accuracy(model: str, data: str) -> float:
    """Source accuracy computed with onnxruntime alone (the independent reference)."""
    d = np.load(data)
    sess = ort.InferenceSession(onnx.load(model).SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": d["input"]})[0]
    return float((logits.argmax(1) == d["labels"]).mean())


def verify_json(capsys, *args) -> dict:
    assert main(["verify", *args, "--json", "-q"]) == 0
    return json.loads(capsys.readouterr().out)


def mp_settings(calib: str, options: str = "") -> Settings:
    """The mp pipeline with these mp-calibrate options (`{gamma=4.0}`)."""
    return Settings(target="mp", calib=calib, quiet=True, passes=f"canonicalize,mp-rewrite,mp-calibrate{options},dce")


@pytest.mark.parametrize("model, data", [(MLP, MLP_DATA), (CNN, CNN_DATA)], ids=["mlp", "cnn"])
def test_auto_calibration_keeps_accuracy_within_3_points(capsys, model, data):
    r = verify_json(capsys, model, "--target", "mp", "--calib", data[0], "--data", data[1])
    source = ort_accuracy(model, data[1])
    assert r["source_accuracy"] == pytest.approx(source)
    assert r["converted_accuracy"] >= source - 0.03, r
    assert all(layer["pearson"] > 0.9 for layer in r["layers"]), r["layers"]


def best_k_term(v: float, k: int, lo: int = -40, hi: int = 40) -> float:
    """Exhaustive best sum of at most k signed powers of two (independent of mpc's snapping)."""
    best = abs(v)
    terms = [0.0] + [s * 2.0 ** e for e in range(lo, hi) for s in (1, -1)]
    for combo in itertools.combinations_with_replacement(terms, k):
        best = min(best, abs(v - sum(combo)))
    return best


@pytest.mark.parametrize("model, data", [(MLP, MLP_DATA), (CNN, CNN_DATA)], ids=["mlp", "cnn"])
def test_result_is_multiplierless(model, data):
    c = compile_model(model, mp_settings(data[0]))
    g = c.graph
    kinds = [op.kind for op in g.ops]
    assert not any(op.kind in MULTIPLY and any(v.is_weight for v in op.operands) for op in g.ops), kinds
    mp_ops = [op for op in g.ops if op.kind.startswith("mp.")]
    assert len(mp_ops) == (3 if model == MLP else 4)
    for op in mp_ops:
        a = op.attrs
        assert a.gain_terms == 2 and math.log2(a.c) == int(math.log2(a.c))
        d = int(np.prod(op.operands[1].type.shape[1:]))
        assert math.log2(a.gamma * d / 2) == int(math.log2(a.gamma * d / 2)), "γD/2 is not a power of two"
        gains = np.asarray(g.weights[op.operands[2].name], np.float64)
        for v in gains[:8]:   # the exhaustive check is slow; the verifier checks all of them
            assert best_k_term(v * a.gamma * d / 2, 2) <= 1e-6 * abs(v * a.gamma * d / 2)


def test_fixed_gamma_and_float_gains():
    c = compile_model(MLP, mp_settings(MLP_DATA[0], "{gamma=4.0,gain=float}"))
    mp_ops = [op for op in c.graph.ops if op.kind == "mp.dot"]
    assert [op.attrs.gamma for op in mp_ops] == [4.0, 4.0, 4.0]
    assert all(op.attrs.gain_terms == 0 for op in mp_ops)


def test_mp_ir_round_trips_and_model_py_matches_the_interpreter(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["convert", CNN, "--target", "mp", "--calib", CNN_DATA[0], "-o", str(out), "-q"]) == 0
    text = (out / "model.mpc").read_text()
    weights = dict(np.load(out / "weights.npz"))
    g = parse(text, weights)
    assert print_graph(g) == text and "mp.conv2d" in text and "mp.dot" in text
    from mpc.ir import run
    d = np.load(CNN_DATA[1])
    ref = run(g, {"input": d["input"][:64]})["logits"]
    pred = tmp_path / "p.npz"
    assert main(["run", str(out), "--data", CNN_DATA[1], "-o", str(pred), "-q"]) == 0
    got = np.load(pred)["logits"][:64]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    report = json.loads((out / "report.json").read_text())
    rows = report["sections"]["MP calibration"]
    assert len(rows) == 4 and all({"gamma", "c", "gain terms", "rel err", "pearson"} <= set(r) for r in rows)


def test_data_times_data_matmul_is_rejected(tmp_path, capsys):
    m = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] a, float[4, 3] b) => (float[N, 3] y) { y = MatMul(a, b) }""")
    path = tmp_path / "dd.onnx"
    onnx.save(m, path)
    assert main(["convert", str(path), "--target", "mp", "-o", str(tmp_path / "o"), "-q"]) == 2
    assert capsys.readouterr().err == (
        "mpc: error: unsupported op 'nn.matmul' at node 'MatMul_0': the mp target needs a 2-D constant weight as "
        "the second matmul operand (data x data products cannot be MP)\n")
    assert not (tmp_path / "o").exists()


def test_nan_data_is_refused_naming_file_and_input(tmp_path, capsys):
    d = np.load(MLP_DATA[1])
    x = d["input"][:8].copy()
    x[3, 5] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, input=x)
    assert main(["verify", MLP, "--target", "mp", "--calib", MLP_DATA[0], "--data", str(bad), "-q"]) == 2
    err = capsys.readouterr().err
    assert err == f"mpc: error: {bad}: input 'input' contains NaN or infinite values (first at sample 3)\n"


def test_nan_reaching_an_mp_kernel_names_the_layer():
    """Data checks stop NaN at the door; a NaN that reaches an MP kernel anyway (a caller of the
    interpreter) is a KernelError naming the op kind and its source node."""
    from mpc.errors import KernelError
    from mpc.ir import run
    compiled = compile_model(MLP, Settings(target="mp", calib=MLP_DATA[0], quiet=True))
    x = np.load(MLP_DATA[1])["input"][:8].copy()
    x[3, 5] = np.nan
    with pytest.raises(KernelError, match=r"op 'mp\.dot' at node '/0/Gemm'.*NaN"):
        run(compiled.graph, {"input": x})


def test_gamma_flag_is_mp_only(capsys):
    assert main(["convert", MLP, "--target", "float", "--gamma", "2", "-q"]) == 2
    assert "--gamma" in capsys.readouterr().err
