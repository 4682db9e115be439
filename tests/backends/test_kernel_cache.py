"""One numba kernel cache per machine (mpc.kernel_cache): the first model.py compiles the kernels,
every later one, in another folder and another process, loads them.

Each run is a fresh Python process with XDG_CACHE_HOME pointed at a temporary folder. A child
reports numba's own cache statistics (hits and misses per compiled kernel) after running model.py,
and its outputs are checked against onnxruntime on the source model.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[2]
CNN = ROOT / "examples" / "models" / "digits_cnn.onnx"

CHILD = """
import importlib.util, json, sys
import numpy as np
from numba.core.registry import CPUDispatcher
folder, data, pred = sys.argv[1:]
spec = importlib.util.spec_from_file_location("model_under_test", folder + "/model.py")
model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model)
with np.load(data) as f:
    out = model.run({k: f[k] for k in f.files})
np.savez(pred, **out)
kernels = sys.modules[model.conv2d_fused.__module__ if hasattr(model, "conv2d_fused") else model.maxpool2d_fast.__module__]
stats = {n: (sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()))
         for n, d in vars(kernels).items() if isinstance(d, CPUDispatcher)}
print(json.dumps({"module": kernels.__name__, "file": getattr(kernels, "__file__", None), "stats": stats}))
"""


def _child(folder: Path, data: Path, pred: Path, cache: Path) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(data), str(pred)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _close(got: np.ndarray, ref: np.ndarray, tol: float = 2e-5) -> None:
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= tol * max(1.0, float(np.abs(ref).max()))


def _convert(model: onnx.ModelProto, folder: Path) -> None:
    path = folder.with_suffix(".onnx")
    onnx.save(model, str(path))
    assert main(["convert", str(path), "--target", "float", "-o", str(folder), "-q"]) == 0


def test_a_second_folder_loads_the_kernels_the_first_one_compiled(tmp_path):
    """digits_cnn and a copy with other weights: different models, the same kernel text."""
    first = onnx.load(str(CNN))
    second = onnx.load(str(CNN))
    for t in second.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            t.CopyFrom(numpy_helper.from_array((a * 0.9).astype(np.float32), t.name))
    _convert(first, tmp_path / "a")
    _convert(second, tmp_path / "b")
    assert (tmp_path / "a" / "weights.npz").read_bytes() != (tmp_path / "b" / "weights.npz").read_bytes()
    x = np.random.default_rng(0).uniform(0, 16, (37, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", input=x)
    cache = tmp_path / "cache"
    runs = [_child(tmp_path / f, tmp_path / "x.npz", tmp_path / f"{f}.npz", cache) for f in ("a", "b")]
    assert runs[0]["module"] == runs[1]["module"]
    assert Path(runs[0]["file"]).parent.parent == cache / "mpc" / "kernels"
    misses = [sum(m for _, m in r["stats"].values()) for r in runs]
    hits = [sum(h for h, _ in r["stats"].values()) for r in runs]
    assert misses[0] > 0 and hits[0] == 0, runs[0]      # the first run compiles ...
    assert misses[1] == 0 and hits[1] > 0, runs[1]       # ... the second compiles nothing: it loads them
    assert len(list(cache.glob("mpc/kernels/*/__pycache__/*.nbi"))) > 0
    assert not list(tmp_path.glob("[ab]/**/*.nb[ic]")), "numba cache files beside model.py"
    for f, model in (("a", first), ("b", second)):
        with np.load(tmp_path / f"{f}.npz") as got:
            _close(got["logits"], _ort(model, {"input": x})[0])


def test_an_unwritable_cache_still_runs(tmp_path):
    """XDG_CACHE_HOME is a file: nothing can be written under it, the kernels compile in-process."""
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    g = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    _convert(model, tmp_path / "pool")
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")
    run = _child(tmp_path / "pool", tmp_path / "x.npz", tmp_path / "y.npz", blocked)
    assert run["file"] is None and run["stats"]
    assert all(h == 0 for h, _ in run["stats"].values())
    assert not list(tmp_path.glob("pool/**/*.nb[ic]"))
    with np.load(tmp_path / "y.npz") as got:
        _close(got["y"], _ort(model, {"x": x})[0])
