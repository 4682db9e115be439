"""ONNX's own backend test suite (onnx.backend.test's runner) against mpc.onnx_backend.

Every ONNX node test case (expanded variants included) lands in exactly one of two places:
- the standard runner, for the cases whose ops all have an importer handler (the list follows
  `supported_ops()`, so handlers added later are picked up) and that mpc prepares; their data are
  regenerated from `onnx.backend.test.case.node` into a temporary folder in ONNX's data layout and
  each must match ONNX's reference outputs with the case's own tolerances (a seeded sample also
  runs the emitted model.py, see mpc.onnx_backend);
- `test_every_other_case_is_rejected_by_name`, which requires mpc's UnsupportedOp or BadModel
  naming the op, the opset or the element type, and nothing else.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import onnx
from onnx.backend.test.case.test_case import TestCase
from onnx.backend.test.runner import Runner

from mpc.errors import BadModel, UnsupportedOp
from mpc.frontend.onnx_ops import supported_ops
from mpc.onnx_backend import MpcBackend
from mpc.onnx_suite import node_cases, op_types, prepared, write_case

CASES = node_cases()
SUPPORTED = set(supported_ops())


def _rejection(case) -> Exception | None:
    """mpc's UnsupportedOp/BadModel from prepare, or None (prepared, or failed in another way,
    which the runner then reports as a failure)."""
    try:
        rep = prepared(case)
    except Exception:  # noqa: BLE001 - selected, so that the runner shows the failure
        return None
    return rep if isinstance(rep, (UnsupportedOp, BadModel)) else None


REJECTIONS = {c.name: _rejection(c) for c in CASES}
SELECTED = [c for c in CASES if op_types(c) <= SUPPORTED and REJECTIONS[c.name] is None]
OTHERS = [c for c in CASES if c not in SELECTED]
DATA = Path(tempfile.mkdtemp(prefix="mpc-onnx-node-tests-"))
atexit.register(shutil.rmtree, DATA, ignore_errors=True)


class NodeSuite(Runner):
    """ONNX's Runner over node cases written to `root` (the wheel has no data folder to read)."""

    def __init__(self, backend, parent_module: str, root: Path, cases: list):
        self.backend, self._parent_module = backend, parent_module
        self._include_patterns, self._exclude_patterns, self._xfail_patterns = set(), set(), set()
        self._test_kwargs: dict = {}
        self._test_items = defaultdict(dict)
        for case in cases:
            folder = write_case(case, root)
            self._add_model_test(TestCase(name=case.name, model_name=case.name, url=None, model_dir=str(folder),
                                          model=None, data_sets=None, kind="node", rtol=case.rtol,
                                          atol=case.atol), "Node")

    def _add_test(self, category, test_name, test_func, report_item, devices=("CPU",), **kwargs):
        """Only the CPU variant of each test: mpc runs nowhere else."""
        super()._add_test(category, test_name, test_func, report_item, devices=devices, **kwargs)


backend_test = NodeSuite(MpcBackend, __name__, DATA, SELECTED)
globals().update(backend_test.test_cases)


def _names_what_it_refuses(e: Exception, model: onnx.ModelProto) -> bool:
    """The message names an op of the model, the opset, or an element type."""
    msg = str(e)
    if isinstance(e, UnsupportedOp) and e.op_type == "opset":
        return "opset version" in msg
    if isinstance(e, UnsupportedOp):
        return f"'{e.op_type}'" in msg and (e.op_type in op_types_of(model) or e.op_type.startswith("nn."))
    elem_names = [n.lower() for n, _ in onnx.TensorProto.DataType.items()]
    return any(f"element type {n}" in msg for n in elem_names) or "not a tensor" in msg \
        or any(op in msg for op in op_types_of(model))


def op_types_of(model: onnx.ModelProto) -> set[str]:
    """Op types of the model's top-level nodes."""
    return {n.op_type for n in model.graph.node}


def test_the_split_covers_every_case():
    assert len(CASES) > 1800 and len(SELECTED) + len(OTHERS) == len(CASES)
    assert len(SELECTED) >= 150   # today's count: a drop means a regression moved cases out of the runner
    assert {"Add", "Conv", "Gemm", "Relu", "Softmax"} <= SUPPORTED


def test_every_other_case_is_rejected_by_name():
    bad = []
    for case in OTHERS:
        e = REJECTIONS[case.name]
        if e is None:
            bad.append(f"{case.name}: prepared, but an op has no handler ({sorted(op_types(case) - SUPPORTED)})")
        elif not _names_what_it_refuses(e, case.model):
            bad.append(f"{case.name}: {type(e).__name__}: {e}")
    assert not bad, "\n".join(bad[:40])
