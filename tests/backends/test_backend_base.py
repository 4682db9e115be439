"""The backend protocol (backends/base.py): a backend lowers a clone of the graph with its own pipeline,
checks that it can render every op of the result, and writes files plus report sections."""
from __future__ import annotations

import numpy as np
import pytest
from mpc.backends import BACKENDS
from mpc.backends.base import Backend, Emitted, emit, lower

from mpc.errors import UnsupportedOp
from mpc.ir import parse, print_graph
from mpc.passmanager import parse_pipeline

CNN = """graph @g(%x: f32[N,1,4,4]) -> (%y: f32[N,5]) {
  weight @w : f32[2,1,3,3]
  weight @fc : f32[8,5]
  %0 = nn.conv2d(%x, @w) {pads = [1, 1, 1, 1]} : f32[N,2,4,4]
  %1 = nn.relu(%0) : f32[N,2,4,4]
  %2 = nn.maxpool2d(%1) {kernel = [2, 2], strides = [2, 2]} : f32[N,2,2,2]
  %3 = nn.flatten(%2) : f32[N,8]
  %y = nn.matmul(%3, @fc) : f32[N,5]
}
"""


def _graph():
    rng = np.random.default_rng(0)
    return parse(CNN, {"w": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
                       "fc": rng.standard_normal((8, 5)).astype(np.float32)})


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_registered_backends_have_valid_lowering_pipelines(name):
    backend = BACKENDS[name]
    assert backend.name == name
    assert parse_pipeline(backend.lowering)   # registered passes with valid options


def test_lowering_runs_on_a_clone():
    graph = _graph()
    before = print_graph(graph)
    lowered, records = lower(BACKENDS["numpy"], graph)
    assert print_graph(graph) == before
    kinds = [op.kind for op in lowered.ops]
    assert kinds == ["np.conv2d_fused", "nn.flatten", "np.matmul_fast"]
    assert [(r.name, r.stats) for r in records] == [("fuse-conv-epilogue", {"fused": 1, "matmul_fast": 1}),
                                                    ("snn-chain", {"chains": 0, "layers": 0, "sparse": 0}),
                                                    ("sparse-csr", {"csr": 0}),
                                                    ("snn-event", {"event": 0, "dense": 0})]


def test_an_op_the_lowering_produces_but_the_table_lacks_is_rejected_by_name(tmp_path):
    """Rendering is checked after lowering: a table without np.conv2d_fused refuses the fused conv."""
    def write(graph, folder, target):
        raise AssertionError("not reached: the check comes first")
    backend = Backend("partial", "fuse-conv-epilogue", {"nn.flatten": None, "np.matmul_fast": None}, write)
    with pytest.raises(UnsupportedOp, match=r"np\.conv2d_fused.*partial backend has no rendering") as e:
        emit(backend, _graph(), tmp_path)
    assert e.value.op_type == "np.conv2d_fused"
    assert list(tmp_path.iterdir()) == []


def test_emit_writes_dumps_per_backend_and_returns_sections(tmp_path):
    seen = []

    def write(graph, folder, target):
        seen.append([op.kind for op in graph.ops])
        (folder / "out.txt").write_text(target)
        return Emitted(("out.txt",), {"Mine": {"ops": len(graph.ops)}})
    render = dict.fromkeys(["np.conv2d_fused", "nn.flatten", "np.matmul_fast"])
    backend = Backend("mine", "fuse-conv-epilogue,dce", render, write)
    out = emit(backend, _graph(), tmp_path, "float", dump_after=("dce",))
    assert seen == [["np.conv2d_fused", "nn.flatten", "np.matmul_fast"]]
    assert out.files == ("out.txt", "ir/mine/02-dce.mpc", "ir/mine/weights.npz")
    assert dict(out.report_sections) == {"Mine": {"ops": 3}}
    assert [r.name for r in out.lowering] == ["fuse-conv-epilogue", "dce"]
    text = (tmp_path / "ir" / "mine" / "02-dce.mpc").read_text()
    with np.load(tmp_path / "ir" / "mine" / "weights.npz") as f:
        assert print_graph(parse(text, {k: f[k] for k in f.files})) == text
