"""ONNX's own node test cases for the spatial, normalization and activation ops, run through mpc.

The cases are regenerated from `onnx.backend.test.case.node` (the installed wheel ships no data
folder) by importing only the modules of these ops. Each case is imported with mpc's ONNX frontend
and run by the interpreter (and, on request, by the emitted model.py); outcomes:
pass (every output within the case's rtol/atol, same shape and dtype), wrong, rejected (mpc's
UnsupportedOp or BadModel, which names the op or dtype) or crash (any other exception).
Inputs that mpc needs as constants (Resize's roi, scales and sizes) are bound to the case's data as
initializers first, as a backend that folds inputs known at preparation would, and a leading 1 stays
a static dim (an ONNX backend runs the model on exactly the shapes it declares).

Where onnxruntime (mpc's oracle everywhere else) and the ONNX reference outputs disagree, mpc follows
onnxruntime, and the case is checked against onnxruntime instead (ORT_REFERENCE says why).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mpc.errors import BadModel, UnsupportedOp
from mpc.frontend import load_onnx
from mpc.ir import run
from mpc.onnx_backend import narrow, widen

# onnx.backend.test.case.node module -> the op types it tests
MODULES = {
    "conv": "Conv", "convtranspose": "ConvTranspose", "maxpool": "MaxPool", "averagepool": "AveragePool",
    "globalmaxpool": "GlobalMaxPool", "globalaveragepool": "GlobalAveragePool", "resize": "Resize",
    "lrn": "LRN", "groupnormalization": "GroupNormalization", "layernormalization": "LayerNormalization", "instance_normalization": "InstanceNormalization",
    "erf": "Erf", "gelu": "Gelu", "prelu": "PRelu", "logsoftmax": "LogSoftmax", "hardmax": "Hardmax",
    "hardsigmoid": "HardSigmoid", "hardswish": "HardSwish", "softplus": "Softplus", "softsign": "Softsign",
    "elu": "Elu", "selu": "Selu", "celu": "Celu", "mish": "Mish", "thresholdedrelu": "ThresholdedRelu",
}
CONSTANT_INPUTS = {"Resize": (1, 2, 3)}
ORT_REFERENCE = {
    "test_resize_downsample_scales_linear_align_corners":
        "align_corners with a non-integer input size * scale: onnxruntime (and torch) divide by the integer "
        "output size minus 1, the ONNX reference by input size * scale minus 1",
    "test_resize_downsample_scales_cubic_align_corners": "the same, in cubic mode",
}


@dataclass
class Outcome:
    """What happened to one case."""

    name: str
    op_type: str
    result: str     # pass | wrong | rejected | crash
    detail: str = ""
    kinds: frozenset[str] = frozenset()   # the IR op kinds of the imported graph


def cases() -> list:
    """The node test cases of these ops (non-expanded), sorted by name."""
    from onnx.backend.test.case import node
    for module in MODULES:
        importlib.import_module(f"onnx.backend.test.case.node.{module}")
    ops = set(MODULES.values())
    found = {c.name: c for c in node._NodeTestCases
             if c.kind == "node" and "expanded" not in c.name and c.model.graph.node[0].op_type in ops}
    return [found[k] for k in sorted(found)]


def _array(a) -> np.ndarray:
    return numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else np.asarray(a)


def _bind_constants(case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The case's model with CONSTANT_INPUTS turned into initializers, and the remaining feeds."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    node = model.graph.node[0]
    inputs = [_array(a) for a in case.data_sets[0][0]]
    feeds = dict(zip([i for i in node.input if i], inputs))
    bound = {node.input[i] for i in CONSTANT_INPUTS.get(node.op_type, ()) if i < len(node.input) and node.input[i]}
    keep = [vi for vi in model.graph.input if vi.name not in bound]
    for name in sorted(bound):
        model.graph.initializer.append(numpy_helper.from_array(feeds.pop(name), name))
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model, feeds


def expected(case) -> list[np.ndarray]:
    """The case's expected outputs, or onnxruntime's for the cases of ORT_REFERENCE."""
    if case.name not in ORT_REFERENCE:
        return [_array(a) for a in case.data_sets[0][1]]
    import onnxruntime as ort
    node = case.model.graph.node[0]
    feeds = dict(zip([i for i in node.input if i], [_array(a) for a in case.data_sets[0][0]]))
    return ort.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _compare(case, got: dict[str, np.ndarray], names: list[str]) -> str:
    """'' when every output matches, else what differs."""
    for name, want in zip(names, expected(case)):
        want = _array(want)
        out = narrow(np.asarray(got[name]), want.dtype)   # f16/bf16 graphs compute in float32
        if out.shape != want.shape or out.dtype != want.dtype:
            return f"output {name}: {out.dtype}{list(out.shape)}, expected {want.dtype}{list(want.shape)}"
        if not np.allclose(out, want, rtol=case.rtol, atol=case.atol, equal_nan=True):
            return f"output {name}: max abs error {float(np.abs(out.astype(np.float64) - want).max())}"
    return ""


def run_case(case, model_py=None) -> Outcome:
    """Import and run one case; `model_py(graph, feeds) -> outputs` checks the emitted model.py too."""
    op_type = case.model.graph.node[0].op_type
    model, feeds = _bind_constants(case)
    try:
        loaded = load_onnx(model.SerializeToString(), static_batch=True)
    except (UnsupportedOp, BadModel) as e:
        return Outcome(case.name, op_type, "rejected", str(e))
    except Exception as e:  # noqa: BLE001  (anything else is what the suite hunts for)
        return Outcome(case.name, op_type, "crash", f"import: {type(e).__name__}: {e}")
    kinds = frozenset(op.kind for op in loaded.graph.ops)
    ir_feeds = {loaded.input_names[k]: widen(np.asarray(v)) for k, v in feeds.items()}
    names = [loaded.output_names[vi.name] for vi in model.graph.output]
    details = []
    for label, runner in [("interpreter", run), ("model.py", model_py)]:
        try:
            details.append(runner and _compare(case, runner(loaded.graph, ir_feeds), names))
        except Exception as e:  # noqa: BLE001
            return Outcome(case.name, op_type, "crash", f"{label}: {type(e).__name__}: {e}", kinds)
    wrong = [f"{label}: {d}" for label, d in zip(("interpreter", "model.py"), details) if d]
    return Outcome(case.name, op_type, "wrong" if wrong else "pass", "; ".join(wrong), kinds)
