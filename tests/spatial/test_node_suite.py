"""ONNX's node test cases of the spatial, normalization and activation ops (tests/spatial/node_suite.py).

Every case must pass (outputs within the case's own rtol/atol) or be rejected with mpc's UnsupportedOp or
BadModel naming the op, attribute or dtype; none may give wrong numbers or crash. A seeded sample of the
passing cases also runs through the model.py the NumPy backend writes (cases without 2-D conv and
max-pool: model.py runs those on numba-compiled kernels, whose loading takes seconds per model and which
tests/backends covers).
"""
from __future__ import annotations

import importlib.util
import random
from collections import Counter

import numpy as np
import pytest
from mpc.backends.numpy_backend import render_model

from spatial import node_suite

# what stays rejected, by the reason's text; the number of cases each reason covers
REJECTED = {
    "has an unsupported type": 3,                      # element types refused at the graph boundary
    "operand must be f16, f32 or f64, got u8": 1,      # MaxPool on uint8 data (integer pooling: not yet)
    "antialiased resize is not supported": 4,
    "coordinate_transformation_mode='tf_crop_and_resize'": 4,
}
MIN_PASSING = 155
SAMPLE = 16


@pytest.fixture(scope="module")
def outcomes():
    return [node_suite.run_case(c) for c in node_suite.cases()]


def test_every_case_passes_or_is_rejected_by_name(outcomes):
    bad = [o for o in outcomes if o.result in ("wrong", "crash")]
    assert not bad, "\n".join(f"{o.result} {o.name}: {o.detail}" for o in bad)
    reasons = Counter(next((r for r in REJECTED if r in o.detail), o.detail) for o in outcomes
                      if o.result == "rejected")
    assert set(reasons) <= set(REJECTED), f"unexpected rejections: {sorted(set(reasons) - set(REJECTED))}"
    assert all(reasons[r] <= n for r, n in REJECTED.items()), reasons
    passing = Counter(o.op_type for o in outcomes if o.result == "pass")
    assert sum(passing.values()) >= MIN_PASSING, passing
    assert set(passing) == set(node_suite.MODULES.values()), sorted(set(node_suite.MODULES.values()) - set(passing))


def _model_py(tmp_path):
    """A runner for node_suite.run_case: render model.py for the graph, load it and run the feeds."""
    count = iter(range(10**6))

    def model_py(graph, feeds):
        folder = tmp_path / f"m{next(count)}"
        folder.mkdir()
        (folder / "model.py").write_text(render_model(graph))
        np.savez(folder / "weights.npz", **graph.weights)
        spec = importlib.util.spec_from_file_location(f"_node_suite_{folder.name}", folder / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.run(dict(feeds))
    return model_py


def test_a_sample_also_passes_through_model_py(outcomes, tmp_path):
    by_name = {c.name: c for c in node_suite.cases()}
    compiled = {"nn.conv2d", "nn.maxpool2d"}
    passing = sorted(o.name for o in outcomes if o.result == "pass" and not o.kinds & compiled)
    sample = random.Random(11).sample(passing, SAMPLE)
    runner = _model_py(tmp_path)
    results = [node_suite.run_case(by_name[name], runner) for name in sample]
    bad = [o for o in results if o.result != "pass"]
    assert not bad, "\n".join(f"{o.result} {o.name}: {o.detail}" for o in bad)
