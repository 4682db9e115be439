"""Sparse execution: model.py runs layers under 30% density through the CSR kernel and still matches
onnxruntime on the source model; denser layers stay dense; the CLI's --prune path writes it end to end."""
import importlib.util

import numpy as np
import onnxruntime as ort
from frontend.models import build

from mpc.cli import main
from mpc.ir import parse
from mpc.passmanager import PassContext, run_pipeline

MLP = """
agraph (float[N, 20] x, float[16, 20] w1, float[16] b1, float[5, 16] w2) => (float[N, 5] y) {
  h = Gemm <transB = 1> (x, w1, b1)
  r = Relu (h)
  y = Gemm <transB = 1> (r, w2)
}
"""


def _model(density1, density2, seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((16, 20)) * (rng.random((16, 20)) < density1)
    w2 = rng.standard_normal((5, 16)) * (rng.random((5, 16)) < density2)
    consts = {"w1": w1, "b1": rng.standard_normal(16), "w2": w2}
    return build(MLP, consts={k: v.astype(np.float32) for k, v in consts.items()})


def _import(folder):
    spec = importlib.util.spec_from_file_location(f"_sparse_{folder.name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_py_runs_sparse_layers_in_csr_and_matches_onnxruntime(tmp_path, capsys):
    model = _model(0.15, 0.6)
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    out = tmp_path / "out"
    assert main(["convert", str(src), "--target", "float", "-o", str(out), "-q"]) == 0
    text = (out / "model.py").read_text()
    assert text.count("csr_matmul(v_") == 1 and text.count("np.matmul(") == 1   # only the sparse layer
    x = np.random.default_rng(3).standard_normal((33, 20)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = _import(out).run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sparse_csr_lowering_keeps_the_interpreter_numbers():
    model = _model(0.1, 0.1, seed=1)
    from mpc.frontend import load_onnx
    graph = load_onnx(model.SerializeToString()).graph
    run_pipeline(graph, "canonicalize", PassContext())
    x = np.random.default_rng(4).standard_normal((6, 20)).astype(np.float32)
    from mpc.ir import print_graph, run
    before = run(graph, {"x": x})["y"]
    recs = run_pipeline(graph, "sparse-csr{max_density=0.3}", PassContext())
    assert recs[0].stats == {"csr": 2}
    text = print_graph(graph)
    assert text.count("sp.matmul_csr(") == 2
    np.testing.assert_allclose(run(parse(text, graph.weights), {"x": x})["y"], before, rtol=1e-5, atol=1e-5)


def test_cli_prune_writes_a_folder_that_runs_and_reports_sparsity(tmp_path, capsys):
    model = _model(1.0, 1.0, seed=2)
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    out = tmp_path / "out"
    assert main(["convert", str(src), "--target", "float", "--prune", "magnitude", "--sparsity", "0.8",
                 "-o", str(out), "-q"]) == 0
    import json
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"].startswith("canonicalize,lbi-prune{method=magnitude,sparsity=0.8},fuse,dce")
    sections = report["sections"]
    assert [r["kept"] for r in sections["Pruning"]] == [64, 16]      # 20% of 320 and of 80 weights
    assert "csr_matmul(" in (out / "model.py").read_text()
    x = np.random.default_rng(5).standard_normal((4, 20)).astype(np.float32)
    ref = parse((out / "model.mpc").read_text(), dict(np.load(out / "weights.npz")))
    from mpc.ir import run
    np.testing.assert_allclose(_import(out).run({"x": x})["y"], run(ref, {"x": x})["y"], rtol=1e-5, atol=1e-5)


def test_bad_prune_flags_are_one_line_errors(capsys):
    assert main(["convert", "examples/models/digits_mlp.onnx", "--target", "float", "--sparsity", "0.5"]) == 2
    assert "mpc: error: --sparsity, --lbi-lambda and --group need --prune" in capsys.readouterr().err
    assert main(["convert", "examples/models/digits_mlp.onnx", "--target", "float", "--prune", "magnitude",
                 "--lbi-lambda", "3"]) == 2
    assert "mpc: error: --lbi-lambda needs --prune lbi" in capsys.readouterr().err
