"""`group=rows` prunes whole hidden neurons but never a class logit: the output layer (a synapse whose
result reaches a graph output without another synapse) is pruned weight by weight instead."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.data import Dataset
from mpc.ir import parse, run
from mpc.passmanager import PassContext, run_pipeline

MLP = """graph @mlp(%x: f64[N,8]) -> (%y: f64[N,4]) {
  weight @w0 : f64[8,12]
  weight @w1 : f64[12,6]
  weight @w2 : f64[6,4]
  weight @b2 : f64[4]
  %0 = nn.matmul(%x, @w0) : f64[N,12]
  %1 = nn.relu(%0) : f64[N,12]
  %2 = nn.matmul(%1, @w1) : f64[N,6]
  %3 = nn.relu(%2) : f64[N,6]
  %4 = nn.matmul(%3, @w2) : f64[N,4]
  %y = nn.add(%4, @b2) : f64[N,4]
}
"""


def _graph(rng):
    shapes = {"w0": (8, 12), "w1": (12, 6), "w2": (6, 4), "b2": (4,)}
    w = {k: rng.standard_normal(s) for k, s in shapes.items()}
    w["w2"][:, 3] *= 0.01   # a class whose weights are all small: row pruning by norm would drop it first
    return parse(MLP, w)


@pytest.mark.parametrize("method", ["method=magnitude,refit=false", "method=lbi"])
def test_group_rows_keeps_every_class_logit(method):
    """Hidden masks are whole rows (all or none of a neuron's inputs); the logits layer keeps every class."""
    rng = np.random.default_rng(2)
    g = _graph(rng)
    ctx = PassContext(dataset=Dataset({"x": rng.random((200, 8))}, None, "calib"))
    run_pipeline(g, f"lbi-prune{{{method},sparsity=0.5,group=rows}}", ctx)
    masks = [g.weights[op.operands[1].name] for op in g.ops if op.kind == "sp.mask"]
    assert len(masks) == 3
    for m in masks[:2]:   # W [in, out]: a neuron's incoming weights are one column
        col = m.any(axis=0)
        assert np.array_equal(m, np.broadcast_to(col, m.shape)) and 0 < col.sum() < m.shape[1]
    out = masks[2]
    assert out.sum(axis=0).tolist() == [3, 3, 3, 3]   # half of 24 weights, the same share for every class
    if "magnitude" in method:   # each class keeps its 3 largest |w|
        w2 = np.abs(g.weights["w2"])
        assert np.array_equal(out, w2 >= np.sort(w2, axis=0)[-3])
    assert not np.array_equal(out, np.broadcast_to(out.any(axis=0), out.shape))   # weight by weight
    groups = {row["layer"]: row["group"] for row in ctx.report.sections["Pruning"]}
    assert groups == {"w0": "rows", "w1": "rows", "w2": "none"}
    run_pipeline(g, "fuse,dce", ctx)
    assert run(g, {"x": rng.random((3, 8))})["y"].shape == (3, 4)
