"""ONNX's own node test cases for the tensor, elementwise, logic and reduction ops, against their expected outputs.

The cases are regenerated from `onnx.backend.test.case.node` (the expected outputs come from ONNX's
NumPy reference implementations, not from mpc). Each case of the op types below either imports and
agrees with every expected output through the interpreter, or is refused with an `MPCError` (an
element type or an input mpc does not take yet); none may give a wrong number or another exception.
The torch lowering runs every case that imports, and a seeded sample also runs through the emitted
model.py. The pass count has a floor, so that a regression which turns passes into refusals fails here.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import warnings
import zlib

import numpy as np
import onnx
import pytest
from mpc.backends.base import emit
from mpc.backends.numpy_backend import BACKEND
from onnx import numpy_helper

from mpc.data import npz_bytes
from mpc.errors import MPCError
from mpc.frontend.onnx import import_model, read_model
from mpc.ir import run
from mpc.onnx_backend import narrow, widen

OPS = {"Abs", "Neg", "Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "IsNaN", "IsInf",
       "Not", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "BitShift", "Equal",
       "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where", "Mod", "Pow", "Sum", "Mean", "Max", "Min",
       "Add", "Sub", "Mul", "Div", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
       "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "Expand", "Split",
       "Slice", "Gather", "GatherElements", "Tile", "Pad", "Cast", "CastLike", "Range", "ConstantOfShape"}
MIN_PASSING = 160   # 177 pass with the element types mpc takes at graph inputs today


def _cases():
    """The node cases of OPS: importing one module of onnx.backend.test.case.node registers its cases
    (collect_testcases would build all 1,800 of them, which takes 20 s)."""
    import onnx.backend.test.case.node as node_cases
    wanted = {op.lower() for op in OPS} | {"rangeop"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in pkgutil.iter_modules(node_cases.__path__):
            if m.name.replace("_", "").lower() in wanted:
                importlib.import_module(f"{node_cases.__name__}.{m.name}")
    cases = node_cases._NodeTestCases
    return [c for c in cases if "expanded" not in c.name and {n.op_type for n in c.model.graph.node} <= OPS]


CASES = _cases()


def _agrees(got: np.ndarray, want: np.ndarray) -> bool:
    want = np.asarray(want)
    got = narrow(got, want.dtype)   # float16/bfloat16 graphs compute in float32 (mpc.onnx_backend)
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if want.dtype.name == "bfloat16":   # NumPy's isnan/allclose do not take bfloat16
        got, want = got.astype(np.float32), want.astype(np.float32)
    if want.dtype.kind == "f":   # ONNX's backend tests compare with rtol 1e-3 / atol 1e-7
        return np.allclose(got, want, rtol=1e-3, atol=1e-7, equal_nan=True)
    return np.array_equal(got, want)


def _import(case):
    """(model, graph, feeds by IR name, expected outputs by IR name), one per data set."""
    model = read_model(case.model.SerializeToString(), case.name)
    graph, ins, outs = import_model(model, case.name)
    for inputs, outputs in case.data_sets:
        feeds = {ins[vi.name]: widen(_array(a)) for vi, a in zip(model.graph.input, inputs) if vi.name in ins}
        yield graph, feeds, {outs[vi.name]: _array(o) for vi, o in zip(model.graph.output, outputs)}


def _array(a) -> np.ndarray:
    """Some cases (Cast, CastLike) hold their data as TensorProtos."""
    return numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else np.asarray(a)


def _outcome(case) -> str:
    try:
        for graph, feeds, want in _import(case):
            got = run(graph, feeds)
            if not all(_agrees(got[k], w) for k, w in want.items()):
                return "wrong"
    except MPCError:
        return "refused"
    return "pass"


@pytest.fixture(scope="module")
def outcomes():
    return {c.name: _outcome(c) for c in CASES}


def test_no_case_gives_wrong_numbers_or_crashes(outcomes):
    assert len(CASES) > 300
    assert [n for n, o in outcomes.items() if o == "wrong"] == []
    assert sum(o == "pass" for o in outcomes.values()) >= MIN_PASSING


def _sample(outcomes, every: int):
    names = sorted(n for n, o in outcomes.items() if o == "pass")
    return [c for c in CASES if c.name in names and zlib.crc32(c.name.encode()) % every == 0]


def _load(folder):
    spec = importlib.util.spec_from_file_location(f"_onnxc_{folder.name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_py_agrees_on_a_seeded_sample(outcomes, tmp_path):
    sample = _sample(outcomes, 4)
    assert len(sample) > 25
    for i, case in enumerate(sample):
        for j, (graph, feeds, want) in enumerate(_import(case)):
            if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in feeds.values()):
                continue   # model.py refuses NaN/inf inputs by design
            folder = tmp_path / f"m{i}_{j}"
            folder.mkdir()
            emit(BACKEND, graph, folder)
            (folder / "weights.npz").write_bytes(npz_bytes({w: graph.weights[w] for w in graph.used_weights()}))
            got = _load(folder).run(feeds)
            for k, w in want.items():
                assert _agrees(np.asarray(got[k]), w), (case.name, k)


def _torch_lacks_arithmetic(graph) -> bool:
    """torch has no arithmetic kernels for uint16/32/64 (they are storage types there): the torch lowering,
    which exists for training, is not checked on graphs that use them."""
    types = [v.type for v in graph.inputs] + [r.type for op in graph.ops for r in op.results]
    return any(t.dtype.kind == "u" and t.dtype.width > 8 for t in types)


def test_torch_lowering_agrees_with_the_expected_outputs(outcomes):
    torch = pytest.importorskip("torch")
    from mpc.backends.torch_backend import lower
    checked = 0
    for case in _sample(outcomes, 1):
        for graph, feeds, want in _import(case):
            if _torch_lacks_arithmetic(graph):
                continue
            with torch.no_grad():
                got = lower(graph, trainable=False)({k: torch.from_numpy(np.array(v)) for k, v in feeds.items()})
            for k, w in want.items():
                assert _agrees(got[k].numpy(), w), (case.name, k, got[k], w)
            checked += 1
    assert checked >= MIN_PASSING
