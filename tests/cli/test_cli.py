"""The `mpc` command line, end to end: convert, inspect, run, verify, passes, ops and the error UX.

Most tests call `mpc.cli.main(argv)` in-process; a few run real subprocesses (`python -m mpc`, the
generated model.py on its own). Every number is checked against onnxruntime on the source model.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_helpers import run_cli as cli
from mpc.backends import BACKENDS
from onnx import helper, numpy_helper

from mpc.cli import main
from mpc.ir import known_kinds, parse, print_graph, run
from mpc.passmanager import parse_pipeline, registered

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "examples" / "models"
DATA = ROOT / "examples" / "data"
MLP, CNN = MODELS / "digits_mlp.onnx", MODELS / "digits_cnn.onnx"
MLP_DATA, CNN_DATA = DATA / "digits_test.npz", DATA / "digits_img_test.npz"
CANONICALIZE = ["remove-identity", "fold-constants", "fold-batchnorm", "gemm-to-matmul", "fold-constants",
                "dce"]
TOL = 2e-5


# -- helpers ------------------------------------------------------------------------------
def one_error_line(err: str) -> str:
    """The message of a user error: exactly one stderr line `mpc: error: ...`, no traceback."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one stderr line, got {err!r}"
    assert lines[0].startswith("mpc: error: "), lines[0]
    return lines[0][len("mpc: error: "):]


def ort_run(model: Path | bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The source model's outputs from onnxruntime, by output name."""
    import onnxruntime as ort
    data = model.read_bytes() if isinstance(model, Path) else model
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    inputs = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, {k: v for k, v in feeds.items() if k in inputs})))


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def assert_close(got: np.ndarray, ref: np.ndarray, tol: float = TOL) -> None:
    """|got - ref| <= tol * max(1, |ref|) elementwise, same shape."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    assert float(err.max(initial=0.0)) <= tol, f"max relative error {err.max()} > {tol}"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """digits_mlp and digits_cnn converted for --target float (once for the module)."""
    base = tmp_path_factory.mktemp("converted")
    outs = {}
    for name, model in (("mlp", MLP), ("cnn", CNN)):
        outs[name] = base / name
        assert main(["convert", str(model), "--target", "float", "-o", str(outs[name]), "-q"]) == 0
    return outs


def clean_env() -> dict[str, str]:
    """The environment without anything that points Python at the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# -- convert / inspect --------------------------------------------------------------------
def test_convert_writes_the_output_folder(converted):
    out = converted["mlp"]
    files = {p.name for p in out.iterdir()}
    assert files == {"model.mpc", "weights.npz", "model.py", "report.json", "report.md"}
    r = report(out)
    assert r["target"] == "float" and r["pipeline"] == "canonicalize"
    assert sorted(r["files"]) == sorted(files)
    assert [p["name"] for p in r["passes"]] == CANONICALIZE
    text = (out / "model.mpc").read_text()
    weights = npz(out / "weights.npz")
    assert print_graph(parse(text, weights)) == text
    assert "digits_mlp" in (out / "report.md").read_text() or r["model"] in (out / "report.md").read_text()


def test_inspect_prints_the_file_text(converted, capsys):
    for out in converted.values():
        rc, stdout, err = cli(capsys, "inspect", out / "model.mpc")
        assert (rc, err) == (0, "")
        assert stdout == (out / "model.mpc").read_text()


def test_inspect_onnx_prints_the_imported_graph(capsys):
    rc, stdout, err = cli(capsys, "inspect", CNN)
    assert (rc, err) == (0, "")
    assert "nn.batchnorm" in stdout and "nn.gemm" in stdout   # nothing ran: BN and Gemm still there
    rc, after, _ = cli(capsys, "inspect", CNN, "--passes", "canonicalize")
    assert rc == 0 and "nn.batchnorm" not in after and "nn.gemm" not in after


def test_dump_ir_after_all(tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "convert", CNN, "--target", "float", "-o", out, "-q", "--dump-ir-after", "all")
    assert (rc, err) == (0, "")
    expected = ["00-input.mpc"] + [f"{i:02d}-{name}.mpc" for i, name in enumerate(CANONICALIZE, 1)]
    # numpy/: the backend's lowering stages (test_dump_ir_after_shows_the_backend_lowering)
    assert sorted(p.name for p in (out / "ir").iterdir()) == sorted(expected + ["numpy", "weights.npz"])
    weights = npz(out / "ir" / "weights.npz")
    data = npz(CNN_DATA)
    ref = ort_run(CNN, {"input": data["input"][:64]})["logits"]
    texts = {}
    for name in expected:
        text = (out / "ir" / name).read_text()
        graph = parse(text, weights, filename=name)
        assert print_graph(graph) == text, name
        # every stage still computes the source model
        assert_close(run(graph, {"input": data["input"][:64]})["logits"], ref)
        rc, stdout, err = cli(capsys, "inspect", out / "ir" / name)
        assert (rc, stdout, err) == (0, text, ""), name
        texts[name] = text
    _, imported, _ = cli(capsys, "inspect", CNN)
    assert texts["00-input.mpc"] == imported
    assert texts[expected[-1]] == (out / "model.mpc").read_text()
    assert "nn.batchnorm" in texts["02-fold-constants.mpc"]
    assert "nn.batchnorm" not in texts["03-fold-batchnorm.mpc"]


def test_dump_ir_after_one_pass(tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "convert", CNN, "--target", "float", "-o", out, "-q",
                     "--dump-ir-after", "fold-batchnorm")
    assert (rc, err) == (0, "")
    dumped = sorted(p.name for p in (out / "ir").iterdir())
    assert dumped == ["00-input.mpc", "03-fold-batchnorm.mpc", "weights.npz"]
    r = report(out)
    assert sorted(r["files"]) == sorted(["model.mpc", "weights.npz", "model.py", "report.json", "report.md",
                                         "ir/00-input.mpc", "ir/03-fold-batchnorm.mpc", "ir/weights.npz"])


@pytest.mark.parametrize("flag", ["all", "fuse-conv-epilogue"])
def test_dump_ir_after_shows_the_backend_lowering(tmp_path, capsys, flag):
    """The numpy backend's lowering stage is dumped as ir/numpy/01-fuse-conv-epilogue.mpc beside its own
    weights: parseable, inspectable, fused, and still computing the source model."""
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "convert", CNN, "--target", "float", "--emit", "numpy", "-o", out, "-q",
                     "--dump-ir-after", flag)
    assert (rc, err) == (0, "")
    dump = out / "ir" / "numpy" / "01-fuse-conv-epilogue.mpc"
    stages = [dump.name] + (["02-snn-chain.mpc", "03-sparse-csr.mpc", "04-snn-event.mpc"]
                            if flag == "all" else [])   # no sparse or spiking layer
    assert sorted(p.name for p in dump.parent.iterdir()) == stages + ["weights.npz"]
    rc, text, err = cli(capsys, "inspect", dump)
    assert (rc, text, err) == (0, dump.read_text(), "")
    assert text.count("np.conv2d_fused(") == 2 and text.count("np.matmul_fast(") == 2
    assert "nn.conv2d" not in text and "nn.maxpool2d" not in text and "nn.matmul" not in text
    assert "np." not in (out / "model.mpc").read_text()    # model.mpc is the graph before lowering
    data = npz(CNN_DATA)
    got = run(parse(text, npz(dump.parent / "weights.npz")), {"input": data["input"][:64]})["logits"]
    assert_close(got, ort_run(CNN, {"input": data["input"][:64]})["logits"])
    r = report(out)
    assert r["backends"]["numpy"]["lowering"] == "fuse-conv-epilogue,snn-chain,sparse-csr,snn-event"
    assert r["backends"]["numpy"]["passes"] == [{"name": "fuse-conv-epilogue",
                                                  "stats": {"fused": 2, "matmul_fast": 2}},
                                                 {"name": "snn-chain", "stats": {"chains": 0, "layers": 0, "sparse": 0}},
                                                 {"name": "sparse-csr", "stats": {"csr": 0}},
                                                 {"name": "snn-event", "stats": {"event": 0, "dense": 0}}]
    assert {"ir/numpy/01-fuse-conv-epilogue.mpc", "ir/numpy/weights.npz"} <= set(r["files"])
    assert r["sections"]["NumPy kernels"] == {"compiled kernels": "conv2d_fused, matmul_fast, maxpool2d_fast",
                                              "helpers": "none"}
    assert "`fuse-conv-epilogue,snn-chain,sparse-csr,snn-event`" in (out / "report.md").read_text()


@pytest.mark.parametrize("passes, pipeline, names", [
    ("canonicalize,dce", "canonicalize,dce", CANONICALIZE + ["dce"]),
    ("+dce", "canonicalize,dce", CANONICALIZE + ["dce"]),
    ("-dce", ",".join(CANONICALIZE[:-1]), CANONICALIZE[:-1]),
    ("dce", "dce", ["dce"]),
])
def test_passes_flag(tmp_path, capsys, passes, pipeline, names):
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "convert", CNN, "--target", "float", "-o", out, "-q", f"--passes={passes}")
    assert (rc, err) == (0, "")
    r = report(out)
    assert r["pipeline"] == pipeline
    assert [p["name"] for p in r["passes"]] == names
    text = (out / "model.mpc").read_text()
    assert ("nn.gemm" in text) == ("gemm-to-matmul" not in names)
    assert ("nn.batchnorm" in text) == ("fold-batchnorm" not in names)
    data = npz(CNN_DATA)
    got = run(parse(text, npz(out / "weights.npz")), {"input": data["input"][:32]})["logits"]
    assert_close(got, ort_run(CNN, {"input": data["input"][:32]})["logits"])


# -- the generated model.py ---------------------------------------------------------------
@pytest.mark.parametrize("name, model, data", [("mlp", MLP, MLP_DATA), ("cnn", CNN, CNN_DATA)])
def test_model_py_runs_standalone(converted, tmp_path, name, model, data):
    """model.py moved elsewhere, run from another folder without the repository on the path."""
    folder = tmp_path / "moved" / "pkg"
    shutil.copytree(converted[name], folder)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    shutil.copy(data, cwd / "data.npz")
    proc = subprocess.run([sys.executable, str(folder / "model.py"), "data.npz", "-o", "pred.npz"], cwd=cwd,
                          env=clean_env(), check=False, capture_output=True, text=True,
                          timeout=600)   # a cold numba cache compiles every kernel: minutes on a loaded 2-core box
    assert proc.returncode == 0, proc.stderr
    pred = npz(cwd / "pred.npz")
    ref = ort_run(model, {"input": npz(data)["input"]})
    assert sorted(pred) == ["logits"]
    assert_close(pred["logits"], ref["logits"])


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_model_py_imports_only_numpy(converted, name):
    tree_ = ast.parse((converted[name] / "model.py").read_text())
    # the compiled kernels are embedded as text (_..._KERNELS = r'''...''') and loaded as a module
    trees = [tree_] + [ast.parse(n.value.value) for n in tree_.body if isinstance(n, ast.Assign)
                       and isinstance(n.value, ast.Constant) and n.targets[0].id.endswith("_KERNELS")]
    assert len(trees) == (2 if name == "cnn" else 1)
    imported = set()
    for node in (n for t in trees for n in ast.walk(t)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in model.py"
            imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names}
    # numba only where a compiled kernel needs it: the CNN's conv/maxpool, never the MLP
    assert third_party == ({"numpy", "numba"} if name == "cnn" else {"numpy"}), imported


# -- run ----------------------------------------------------------------------------------
def test_run_matches_onnxruntime_and_refuses_to_overwrite(converted, tmp_path, capsys):
    pred = tmp_path / "pred.npz"
    rc, _, err = cli(capsys, "run", converted["cnn"], "--data", CNN_DATA, "-o", pred, "-q")
    assert (rc, err) == (0, "")
    ref = ort_run(CNN, {"input": npz(CNN_DATA)["input"]})["logits"]
    assert_close(npz(pred)["logits"], ref)
    before = pred.read_bytes()

    rc, stdout, err = cli(capsys, "run", converted["mlp"], "--data", MLP_DATA, "-o", pred, "-q")
    assert rc == 2 and stdout == ""
    assert str(pred) in one_error_line(err)
    assert pred.read_bytes() == before

    rc, _, err = cli(capsys, "run", converted["mlp"], "--data", MLP_DATA, "-o", pred, "-q", "--force")
    assert (rc, err) == (0, "")
    assert_close(npz(pred)["logits"], ort_run(MLP, {"input": npz(MLP_DATA)["input"]})["logits"])
    assert [p.name for p in tmp_path.iterdir()] == ["pred.npz"]   # no temp files left


def test_run_in_new_processes_reuses_the_compiled_kernels(converted, tmp_path):
    """numba caches the kernels beside their module in the user cache (XDG_CACHE_HOME, a temporary
    folder in the tests) and, loading them in a later process, imports that module again by name:
    `mpc run`, then `mpc run` again, then model.py as a script, then `mpc run` must all work on one
    folder, and nothing is cached beside model.py."""
    folder = tmp_path / "cnn"
    shutil.copytree(converted["cnn"], folder)
    ref = ort_run(CNN, {"input": npz(CNN_DATA)["input"]})["logits"]
    mpc_run = [sys.executable, "-m", "mpc", "run", str(folder), "--data", str(CNN_DATA), "-q", "-o"]
    script = [sys.executable, str(folder / "model.py"), str(CNN_DATA), "-o"]
    for i, argv in enumerate([mpc_run, mpc_run, script, mpc_run]):
        pred = tmp_path / f"pred{i}.npz"
        proc = subprocess.run(argv + [str(pred)], cwd=tmp_path, check=False, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (i, proc.stderr)
        assert_close(npz(pred)["logits"], ref)
    assert list(Path(os.environ["XDG_CACHE_HOME"]).glob("mpc/kernels/*/__pycache__/*.nbi")), "no numba cache"
    assert not list(folder.glob("**/*.nbi")), "numba cache beside model.py"


# -- verify -------------------------------------------------------------------------------
REQUIRED = {"target", "samples", "max_abs_err", "mean_abs_err", "top1_agreement", "source_accuracy",
            "converted_accuracy", "layers"}
# extra keys found in the output (allowed): "model", "data" and "max_rel_err" (checked below)


def verify_json(capsys, *argv) -> dict:
    rc, stdout, err = cli(capsys, "verify", *argv, "--json", "-q")
    assert (rc, err) == (0, ""), err
    assert stdout.count("\n") == 1
    return json.loads(stdout)


def test_verify_json_without_labels(capsys):
    r = verify_json(capsys, MLP, "--target", "float", "--samples", "40")
    assert REQUIRED <= set(r), sorted(REQUIRED - set(r))
    assert r["target"] == "float" and r["samples"] == 40
    assert r["source_accuracy"] is None and r["converted_accuracy"] is None
    assert r["top1_agreement"] == 1.0
    for row in r["layers"]:
        assert set(row) == {"name", "pearson", "neuron_pearson"}


def test_verify_json_data_without_labels(tmp_path, capsys):
    np.savez(tmp_path / "nolabels.npz", input=npz(MLP_DATA)["input"][:50])
    r = verify_json(capsys, MLP, "--target", "float", "--data", tmp_path / "nolabels.npz")
    assert r["samples"] == 50
    assert r["source_accuracy"] is None and r["converted_accuracy"] is None


@pytest.mark.parametrize("model, data", [(MLP, MLP_DATA), (CNN, CNN_DATA)])
def test_verify_float_against_onnxruntime(capsys, model, data):
    r = verify_json(capsys, model, "--target", "float", "--data", data)
    assert REQUIRED <= set(r), sorted(REQUIRED - set(r))
    arrays = npz(data)
    ref = ort_run(model, {"input": arrays["input"]})["logits"]
    assert r["samples"] == len(arrays["labels"]) == ref.shape[0]
    source_accuracy = float((ref.argmax(1) == arrays["labels"]).mean())
    assert r["source_accuracy"] == pytest.approx(source_accuracy, abs=1e-12)
    assert r["top1_agreement"] == 1.0
    assert r["converted_accuracy"] == pytest.approx(source_accuracy, abs=1e-12)   # same top-1 everywhere
    assert 0 <= r["mean_abs_err"] <= r["max_abs_err"] <= TOL * max(1.0, float(np.abs(ref).max()))
    assert 0 <= r["max_rel_err"] <= TOL
    node_names = {n.name for n in onnx.load(str(model)).graph.node}
    assert r["layers"], "no layers compared"
    for row in r["layers"]:
        assert set(row) == {"name", "pearson", "neuron_pearson"}
        assert row["name"] in node_names, row
        assert row["pearson"] is not None and row["pearson"] > 0.999999, row


# -- errors -------------------------------------------------------------------------------
def _unsupported_model(path: Path) -> None:
    node = helper.make_node("Sin", ["x"], ["y"], name="my_sin")
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([node], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _setup(tmp: Path, case: str) -> list:
    """The argv of an error case (files it needs are written under tmp); the output is tmp/out."""
    out = tmp / "out"
    convert = ["convert", MLP, "--target", "float", "-o", out]
    if case == "unknown target":
        return ["convert", MLP, "--target", "bogus", "-o", out]
    if case == "unknown flag":
        return convert + ["--bogus"]
    if case == "bad flag value":
        return convert + ["--input-shape", "1,x"]
    if case == "missing model":
        return ["convert", tmp / "nope.onnx", "--target", "float", "-o", out]
    if case == "garbage bytes":
        (tmp / "garbage.onnx").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 1000, np.uint8)))
        return ["convert", tmp / "garbage.onnx", "--target", "float", "-o", out]
    if case == "truncated":
        blob = MLP.read_bytes()
        (tmp / "half.onnx").write_bytes(blob[:len(blob) // 2])
        return ["convert", tmp / "half.onnx", "--target", "float", "-o", out]
    if case == "unsupported op":
        _unsupported_model(tmp / "sin.onnx")
        return ["convert", tmp / "sin.onnx", "--target", "float", "-o", out]
    if case == "wrong data shape (verify)":
        return ["verify", MLP, "--target", "float", "--data", CNN_DATA]
    if case == "wrong data shape (run)":
        assert main(["convert", str(MLP), "--target", "float", "-o", str(tmp / "conv"), "-q"]) == 0
        return ["run", tmp / "conv", "--data", CNN_DATA, "-o", out]
    if case == "data without the input":
        np.savez(tmp / "nokey.npz", features=np.zeros((3, 64), np.float32))
        return ["verify", MLP, "--target", "float", "--data", tmp / "nokey.npz"]
    if case == "mpc syntax error":
        (tmp / "bad.mpc").write_text("graph @g(%x: f32[N,4]) -> (%y: f32[N,4]) {\n"
                                     "  %y = nn.relu($x) : f32[N,4]\n}\n")
        return ["convert", tmp / "bad.mpc", "--target", "float", "-o", out]
    if case == "unknown pass":
        return convert + ["--passes", "canonicalize,bogus"]
    if case == "unknown dump name":
        return convert + ["--dump-ir-after", "bogus"]
    if case == "gamma for float":
        return convert + ["--gamma", "2"]
    if case == "no command":
        return []
    raise AssertionError(case)


ERRORS = {  # case -> regex the message must match
    "unknown target": r"bogus.*float",
    "unknown flag": r"--bogus",
    "bad flag value": r"--input-shape.*1,x",
    "missing model": r"nope\.onnx",
    "garbage bytes": r"garbage\.onnx",
    "truncated": r"half\.onnx",
    "unsupported op": r"^unsupported op 'Sin' at node 'my_sin': no handler for this op type \(supported: "
                      r"[A-Za-z0-9]+(, [A-Za-z0-9]+)*\)$",
    "wrong data shape (verify)": r"'input'.*N, ?64",
    "wrong data shape (run)": r"'input'.*N, ?64",
    "data without the input": r"nokey\.npz.*'input'.*N, ?64",
    "mpc syntax error": r"bad\.mpc:2:16: ",
    "unknown pass": r"'bogus'",
    "unknown dump name": r"--dump-ir-after.*bogus",
    "gamma for float": r"--gamma.*float",
    "no command": r"command",
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_user_errors(tmp_path, capsys, case):
    argv = _setup(tmp_path, case)
    before = set(tmp_path.iterdir())
    rc, stdout, err = cli(capsys, *argv)
    assert rc == 2 and stdout == "", (rc, stdout, err)
    message = one_error_line(err)
    assert re.search(ERRORS[case], message), message
    assert set(tmp_path.iterdir()) == before, "a failed command left files behind"


def test_existing_output_is_left_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    (out / "sub" / "model.py").write_text("# not generated")
    before = tree(out)
    rc, stdout, err = cli(capsys, "convert", MLP, "--target", "float", "-o", out)
    assert rc == 2 and stdout == ""
    assert "--force" in one_error_line(err)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    rc, _, err = cli(capsys, "convert", MLP, "--target", "float", "-o", out, "-q", "--force")
    assert (rc, err) == (0, "")
    assert "keep.txt" not in tree(out) and "model.py" in tree(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_debug_shows_a_traceback(tmp_path, capsys):
    rc, _, err = cli(capsys, "--debug", "convert", MLP, "--target", "bogus", "-o", tmp_path / "out")
    assert rc == 2
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("mpc: error: unknown target 'bogus'")


def test_internal_error_exits_1_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A bug inside mpc (here: the backend raises mid-write) is exit 1 with one line, the
    traceback only with --debug, and the half-written output folder is removed."""
    def boom(graph, folder, target="float"):
        (Path(folder) / "model.py").write_text("partial")
        raise RuntimeError("boom")
    monkeypatch.setitem(BACKENDS, "numpy", dataclasses.replace(BACKENDS["numpy"], write=boom))
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "convert", MLP, "--target", "float", "-o", out, "-q")
    assert rc == 1 and stdout == ""
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("mpc: internal error: RuntimeError: boom"), lines[0]
    assert list(tmp_path.iterdir()) == []
    rc, _, err = cli(capsys, "--debug", "convert", MLP, "--target", "float", "-o", out, "-q")
    assert rc == 1 and "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert list(tmp_path.iterdir()) == []


def _negative_batch_dim(path: Path) -> None:
    model = onnx.load(str(MLP))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -2
    onnx.save(model, str(path))


def test_negative_input_dim_is_a_user_error(tmp_path, capsys):
    """An ONNX input declared with a negative dim is refused by every command, naming the model,
    not the output folder (which was never written)."""
    model = tmp_path / "neg.onnx"
    _negative_batch_dim(model)
    for argv in (["inspect", model], ["convert", model, "--target", "float", "-o", tmp_path / "out"],
                 ["verify", model, "--target", "float", "--samples", "4"]):
        rc, stdout, err = cli(capsys, *argv)
        assert rc == 2, (argv[0], rc, stdout[:200], err)
        message = one_error_line(err)
        assert "-2" in message and "model.mpc" not in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neg.onnx"]


def _no_outputs() -> onnx.ModelProto:
    model = onnx.load(str(MLP))
    del model.graph.output[:]
    return model


def _no_inputs() -> onnx.ModelProto:
    model = onnx.load(str(MLP))
    del model.graph.input[:]
    model.graph.initializer.append(numpy_helper.from_array(np.ones((2, 64), np.float32), "input"))
    return model


@pytest.mark.parametrize("make", [_no_outputs, _no_inputs])
def test_verify_degenerate_graphs_do_not_crash(tmp_path, capsys, make):
    """A graph without outputs, or without inputs (all constant), passes onnx.checker: verify
    reports on it or refuses it as a user error, never with an internal error."""
    path = tmp_path / "model.onnx"
    onnx.save(make(), str(path))
    rc, _, err = cli(capsys, "verify", path, "--target", "float", "--samples", "4", "--json")
    assert rc in (0, 2), err
    if rc == 2:
        one_error_line(err)


@pytest.mark.parametrize("batch", [2 ** 40, 2 ** 62])
def test_verify_input_too_large_to_sample(tmp_path, capsys, batch):
    """A static input shape far too large for random samples is refused as a user error."""
    model = onnx.load(str(MLP))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    rc, _, err = cli(capsys, "verify", path, "--target", "float", "--samples", "4")
    assert rc == 2, err
    assert "input" in one_error_line(err)


# -- passes / ops -------------------------------------------------------------------------
def test_passes_lists_every_registered_pass(capsys):
    rc, stdout, err = cli(capsys, "passes")
    assert (rc, err) == (0, "")
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.strip() and not line.startswith(" ")}
    assert "options (defaults): mp-calibrate{gamma=none,gain_terms=2,gain=shift-add,refine=none,channel_scale=off}" in stdout
    parse_pipeline("mp-calibrate{gamma=none,gain_terms=2,gain=shift-add,refine=none,channel_scale=off}")   # the listing reads back
    names = {name for name, _, _ in registered()}
    assert set(CANONICALIZE) | {"canonicalize", "mp-rewrite", "mp-calibrate"} <= names
    assert set(lines) == names
    for name, kind, summary in registered():
        assert kind in lines[name] and summary.split()[0] in lines[name]
        assert len(lines[name].split()) >= 3, lines[name]   # name, kind, a summary


def test_ops_lists_nn_and_mp_kinds(capsys):
    rc, stdout, err = cli(capsys, "ops")
    assert (rc, err) == (0, "")
    listed = [line.split()[0] for line in stdout.splitlines() if line.strip()]
    assert listed == known_kinds()
    assert {"nn.matmul", "nn.conv2d", "nn.gemm", "nn.batchnorm", "mp.dot", "mp.conv2d", "np.conv2d_fused",
            "np.matmul_fast"} <= set(listed)
    for line in stdout.splitlines():
        assert "(" in line and len(line.split(")", 1)[1].strip()) > 0, line   # operands, then a summary


# -- real subprocesses --------------------------------------------------------------------
def test_python_m_mpc_error_is_one_line(tmp_path):
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 10)
    argv = [sys.executable, "-m", "mpc", "convert", "garbage.onnx", "--target", "float", "-o", "out"]
    proc = subprocess.run(argv,
                          cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_error_line(proc.stderr).startswith("garbage.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.onnx"]


def test_converting_onnx_never_imports_torch(tmp_path):
    script = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["mpc", "convert", {str(MLP)!r}, "--target", "float", "-o", {str(tmp_path / 'out')!r},
                    "-q"]
        try:
            runpy.run_module("mpc", run_name="__main__")
        except SystemExit as e:
            assert e.code in (0, None), e.code
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not loaded, loaded
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=False, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert (tmp_path / "out" / "model.py").is_file()
