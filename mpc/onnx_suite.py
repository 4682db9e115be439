"""ONNX's node test cases run through mpc's ONNX backend (`mpc.onnx_backend`): the shared part of
tests/onnx_suite and benchmarks/bench_onnx_suite.py.

The installed onnx wheel ships no node test data, so the cases are regenerated from their
definitions in `onnx.backend.test.case.node` (`node_cases`) and, for the standard runner, written
into a folder in the layout of ONNX's data folder (`write_case`: model.onnx, test_data_set_N/
input_J.pb, output_J.pb). `classify` runs one case and says how it went: pass, rejected (mpc's
UnsupportedOp or BadModel from prepare), wrong (numbers, dtype or shape differ from ONNX's
reference outputs) or crash (any other exception).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from mpc.errors import BadModel, MPCError, UnsupportedOp
from mpc.onnx_backend import MpcBackend, SpecializingRep

OUTCOMES = ("pass", "rejected", "wrong", "crash")


def node_cases(expanded: bool = True) -> list:
    """ONNX's node test cases (onnx.backend.test TestCase), sorted by name; `expanded=False` leaves
    out the function-expanded variants (`*_expanded*`)."""
    from onnx.backend.test.loader import load_node_model_tests
    with warnings.catch_warnings():   # some case generators overflow float casts on purpose
        warnings.simplefilter("ignore")
        cases = load_node_model_tests()
    return sorted((c for c in cases if expanded or "_expanded" not in c.name), key=lambda c: c.name)


def op_types(case) -> set[str]:
    """The op types of a case's top-level nodes."""
    return {n.op_type for n in case.model.graph.node}


def op_of(case) -> str:
    """The op a case tests: its name's op, read from the model's first node."""
    return case.model.graph.node[0].op_type


def _tensor(value, name: str) -> onnx.TensorProto:
    return value if isinstance(value, onnx.TensorProto) else numpy_helper.from_array(np.asarray(value), name)


def write_case(case, root: Path) -> Path:
    """Write one case as ONNX's data folder does: root/<name>/model.onnx and test_data_set_N/."""
    folder = Path(root) / case.name
    folder.mkdir(parents=True, exist_ok=False)
    (folder / "model.onnx").write_bytes(case.model.SerializeToString())
    graph = case.model.graph
    for i, (inputs, outputs) in enumerate(case.data_sets):
        data = folder / f"test_data_set_{i}"
        data.mkdir()
        for j, x in enumerate(inputs):
            (data / f"input_{j}.pb").write_bytes(_tensor(x, graph.input[j].name).SerializeToString())
        for j, y in enumerate(outputs):
            (data / f"output_{j}.pb").write_bytes(_tensor(y, graph.output[j].name).SerializeToString())
    return folder


@dataclass(frozen=True)
class Outcome:
    """How one case went: one of OUTCOMES, and the message (error or mismatch), if any."""

    kind: str
    message: str = ""


def _normalize(x) -> np.ndarray:
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def prepared(case, check_emitted: bool | None = False):
    """The rep of a case, or mpc's rejection (UnsupportedOp/BadModel) of it. A specializing rep
    (inputs needed at import) is prepared for real on the first data set's values here, since
    only then can mpc refuse it; any other exception propagates."""
    try:
        rep = MpcBackend.prepare(case.model, check_emitted=check_emitted)
        if isinstance(rep, SpecializingRep):
            rep.bind([_normalize(x) for x in case.data_sets[0][0]])
    except (UnsupportedOp, BadModel) as e:
        return e
    return rep


def classify(case, check_emitted: bool | None = False) -> Outcome:
    """Prepare and run one case against its reference outputs with the runner's own comparison."""
    from onnx.backend.test.runner import Runner
    try:
        rep = prepared(case, check_emitted)
    except Exception as e:  # noqa: BLE001 - anything else is what this classification is for
        return Outcome("crash", f"prepare: {type(e).__name__}: {e}")
    if isinstance(rep, MPCError):
        return Outcome("rejected", str(rep))
    try:
        for inputs, outputs in case.data_sets:
            got = rep.run([_normalize(x) for x in inputs])
            Runner.assert_similar_outputs([_normalize(y) for y in outputs], got, case.rtol, case.atol)
    except AssertionError as e:
        return Outcome("wrong", " ".join(str(e).split())[:300])
    except Exception as e:  # noqa: BLE001 - a run-time refusal after a successful prepare is not clean either
        return Outcome("crash", f"run: {type(e).__name__}: {e}")
    return Outcome("pass", "specialized" if isinstance(rep, SpecializingRep) else "")


_OPSET = re.compile(r"opset version (\S+) of domain")
_ELEM_NAMES = {v: k.lower() for k, v in onnx.TensorProto.DataType.items()}


def rejection_reason(message: str) -> str:
    """A short class for a rejection message: 'opset N', 'dtype <name>', 'no handler', ... or 'other'."""
    m = _OPSET.search(message)
    if m:
        return f"opset {m.group(1)}"
    m = re.search(r"element type (\w+)|unsupported (?:element )?type (\w+)", message)
    if m:
        return f"dtype {m.group(1) or m.group(2)}"
    for needle, reason in _REASONS:
        if needle in message:
            return reason
    return "other"


_REASONS = (("no handler for this op type", "no handler"), ("unsupported attribute", "attribute value"),
            ("must be a constant", "run-time input that must be constant"),
            ("only supported on tensors known at import", "run-time input that must be constant"),
            ("is not supported (only the default ONNX domain)", "non-default domain"),
            ("recurrent layers", "recurrent layer"), ("ONNX shape inference failed", "ONNX shape inference"),
            ("only 2-D", "not 2-D"), ("not a tensor", "input not a tensor"))
