"""Fuzz the command line with mutated ONNX files and mutated IR text.

Every example goes through `mpc.cli.main` exactly as a user would run it (`convert`; plus `inspect`
and `verify` for structured ONNX mutations and for IR text). Whatever the input, the CLI must
either succeed (exit 0) or refuse with exit 2 and one stderr line `mpc: error: ...`; exit 1 (an
internal error) or an exception escaping `main` is a bug. A failed conversion must leave no output
folder and no staging folder (`.<name>.tmp-*`) behind, and what `inspect` prints must read back to
the same text (the text form is the contract).
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from frontend import models as M  # tests/frontend/models.py (pytest puts tests/ on sys.path)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "examples" / "models"

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# -- running the CLI ----------------------------------------------------------------------
def cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `mpc.cli.main(argv)`; any exception escapes (a failure)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def check_outcome(argv: list[str], rc: int, err: str) -> None:
    """Exit 0, or exit 2 with exactly one line `mpc: error: ...` and no traceback."""
    assert rc in (0, 2), f"exit {rc} for {argv}: {err!r}"
    assert "Traceback" not in err, err
    if rc == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and err.endswith("\n"), f"expected one stderr line, got {err!r}"
        assert lines[0].startswith("mpc: error: "), lines[0]


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Entries of `folder` besides `keep` (output folders, staging folders, temp files)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def convert_checked(model: Path, work: Path) -> int:
    """Run `mpc convert MODEL --target float -o WORK/out -q` and check what it leaves behind."""
    out = work / "out"
    argv = ["convert", str(model), "--target", "float", "-o", str(out), "-q"]
    before = {p.name for p in work.iterdir()}
    rc, stdout, err = cli(argv)
    check_outcome(argv, rc, err)
    assert stdout == "", stdout
    if rc == 0:
        assert (out / "model.mpc").is_file() and (out / "model.py").is_file()
        assert leftovers(work, before | {"out"}) == []
    else:
        assert leftovers(work, before) == [], f"left behind after a failed convert: {leftovers(work, before)}"
    return rc


def verify_checked(model: Path) -> None:
    """`mpc verify MODEL --target float` on a few random samples: the same exit-status contract."""
    argv = ["verify", str(model), "--target", "float", "--samples", "3", "--json", "-q"]
    rc, _, err = cli(argv)
    check_outcome(argv, rc, err)


def inspect_roundtrip(model: Path, work: Path, weights: dict[str, np.ndarray] | None) -> None:
    """`mpc inspect MODEL` exits 0 or 2; what it prints reads back (with `weights`) to the same text."""
    argv = ["inspect", str(model)]
    rc, printed, err = cli(argv)
    check_outcome(argv, rc, err)
    if rc != 0 or weights is None:
        return
    again = work / "again"
    again.mkdir()
    np.savez(again / "weights.npz", **weights)
    (again / "model.mpc").write_text(printed, encoding="utf-8")
    rc2, printed2, err2 = cli(["inspect", str(again / "model.mpc")])
    assert (rc2, printed2) == (0, printed), f"printed IR does not read back: {err2!r}\n{printed}"
    shutil.rmtree(again)


# -- seeds --------------------------------------------------------------------------------
def _onnx_seeds() -> list[bytes]:
    return [(MODELS / "digits_mlp.onnx").read_bytes(), M.cnn().SerializeToString()]


ONNX_SEEDS = _onnx_seeds()


def _ir_seeds() -> list[tuple[str, dict[str, np.ndarray]]]:
    """Printed IR (as imported, and after the float pipeline) of digits_mlp and digits_cnn, each
    with the weight table it reads (the two models share weight names with different shapes)."""
    seeds = []
    with tempfile.TemporaryDirectory() as d:
        for name in ("digits_mlp", "digits_cnn"):
            out = Path(d) / name
            rc, _, err = cli(["convert", str(MODELS / f"{name}.onnx"), "--target", "float", "-o", str(out),
                              "-q", "--dump-ir-after", "all"])
            assert rc == 0, err
            for text, npz in ((out / "ir" / "00-input.mpc", out / "ir" / "weights.npz"),
                              (out / "model.mpc", out / "weights.npz")):
                with np.load(npz) as f:
                    seeds.append((text.read_text(), {k: f[k] for k in f.files}))
    return seeds


# -- byte-level mutations of ONNX files ---------------------------------------------------
def _flip(data, b, _):
    if not b:
        return b
    i = data.draw(st.integers(0, len(b) - 1))
    return b[:i] + bytes([b[i] ^ data.draw(st.integers(1, 255))]) + b[i + 1:]


def _truncate(data, b, _):
    return b[:data.draw(st.integers(0, max(len(b) - 1, 0)))]


def _insert(data, b, _):
    i = data.draw(st.integers(0, len(b)))
    return b[:i] + data.draw(st.binary(min_size=1, max_size=16)) + b[i:]


def _delete(data, b, _):
    i = data.draw(st.integers(0, len(b)))
    return b[:i] + b[i + data.draw(st.integers(1, 64)):]


def _splice(data, b, other):
    i = data.draw(st.integers(0, len(b)))
    j = data.draw(st.integers(0, len(other)))
    return b[:i] + other[j:]


def _duplicate(data, b, _):
    i = data.draw(st.integers(0, len(b)))
    j = min(len(b), i + data.draw(st.integers(1, 64)))
    k = data.draw(st.integers(0, len(b)))
    return b[:k] + b[i:j] + b[k:]


BYTE_MUTATIONS = [_flip, _truncate, _insert, _delete, _splice, _duplicate]


# -- structured mutations through the ONNX protobuf ---------------------------------------
OP_TYPES = ["Relu", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Flatten", "Reshape", "Softmax", "BatchNormalization", "Transpose", "Concat",
            "Identity", "Dropout", "Gather", "Slice", "Squeeze", "Unsqueeze", "Constant", "Shape", "Cast",
            "Clip", "ReduceMean", "Sigmoid", "Tanh", "LeakyRelu", "ConstantOfShape", "Hardmax",
            "NonMaxSuppression", "LSTM", "If", "", "relu", "NoSuchOp"]
ELEM_TYPES = [0, 1, 2, 3, 6, 7, 9, 10, 11, 16, 99]
INTS = st.one_of(st.sampled_from([-(2 ** 40), -3, -2, -1, 0, 1, 2, 3, 4, 7, 64, 2 ** 31, 2 ** 62]),
                 st.integers(-8, 8))
FLOATS = st.one_of(st.sampled_from([0.0, -1.0, 1e-12, 1e30, float("nan"), float("inf"), float("-inf")]),
                   st.floats(-10, 10, allow_nan=False))
NAMES = st.sampled_from(["", "x", "input", "nope", "0.weight", "logits", "c", "/0/Gemm_output_0", "N"])


def _pick(data, seq):
    return seq[data.draw(st.integers(0, len(seq) - 1))] if len(seq) else None


def _m_attribute(data, m):
    node = _pick(data, [n for n in m.graph.node if n.attribute] or list(m.graph.node))
    if node is None:
        return
    how = data.draw(st.sampled_from(["value", "retype", "drop", "add"]))
    attr = _pick(data, node.attribute)
    if how == "add" or attr is None:
        node.attribute.append(onnx.helper.make_attribute(data.draw(st.sampled_from(
            ["axis", "perm", "bogus", "alpha", "kernel_shape", "pads", "auto_pad"])), data.draw(INTS)))
    elif how == "drop":
        node.attribute.remove(attr)
    elif how == "retype":
        name = attr.name
        node.attribute.remove(attr)
        value = data.draw(st.one_of(INTS, FLOATS, st.lists(INTS, max_size=5), st.text(max_size=4)))
        node.attribute.append(onnx.helper.make_attribute(name, value) if value != [] else
                              onnx.helper.make_attribute(name, [], attr_type=onnx.AttributeProto.INTS))
    elif attr.type == onnx.AttributeProto.INT:
        attr.i = data.draw(INTS)
    elif attr.type == onnx.AttributeProto.FLOAT:
        attr.f = data.draw(FLOATS)
    elif attr.type == onnx.AttributeProto.INTS:
        del attr.ints[:]
        attr.ints.extend(data.draw(st.lists(INTS, max_size=6)))
    elif attr.type == onnx.AttributeProto.FLOATS:
        del attr.floats[:]
        attr.floats.extend(data.draw(st.lists(FLOATS, max_size=4)))
    elif attr.type == onnx.AttributeProto.STRING:
        attr.s = data.draw(st.sampled_from([b"", b"SAME_UPPER", b"VALID", b"NOTSET", b"xyz"]))
    elif attr.type == onnx.AttributeProto.TENSOR:
        del attr.t.dims[:]
        attr.t.dims.extend(data.draw(st.lists(INTS, max_size=3)))


def _m_op_type(data, m):
    node = _pick(data, m.graph.node)
    if node is not None:
        node.op_type = data.draw(st.sampled_from(OP_TYPES))
        if data.draw(st.integers(0, 9)) == 0:
            node.domain = data.draw(st.sampled_from(["ai.onnx.ml", "com.microsoft", "nope"]))


def _m_shape(data, m):
    vi = _pick(data, list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info))
    if vi is None:
        return
    tt = vi.type.tensor_type
    how = data.draw(st.sampled_from(["dim", "param", "add", "remove", "clear", "elem"]))
    dims = tt.shape.dim
    if how == "elem":
        tt.elem_type = data.draw(st.sampled_from(ELEM_TYPES))
    elif how == "clear":
        tt.ClearField("shape")
    elif how == "add":
        dims.add().dim_value = data.draw(st.integers(0, 9))
    elif how == "remove" and len(dims):
        del dims[data.draw(st.integers(0, len(dims) - 1))]
    elif how == "dim" and len(dims):
        dims[data.draw(st.integers(0, len(dims) - 1))].dim_value = data.draw(INTS)
    elif how == "param" and len(dims):
        dim = dims[data.draw(st.integers(0, len(dims) - 1))]
        dim.dim_param = data.draw(st.sampled_from(["N", "M", "", "x y"]))


def _m_drop_input(data, m):
    node = _pick(data, [n for n in m.graph.node if n.input])
    if node is None:
        return
    i = data.draw(st.integers(0, len(node.input) - 1))
    if data.draw(st.booleans()):
        del node.input[i]
    else:
        node.input[i] = ""


def _m_dangling(data, m):
    names = [o for n in m.graph.node for o in n.output] + [t.name for t in m.graph.initializer]
    how = data.draw(st.sampled_from(["input", "output", "graph_output", "graph_input"]))
    node = _pick(data, m.graph.node)
    new = data.draw(st.one_of(NAMES, st.sampled_from(names or [""])))
    if how == "input" and node is not None and node.input:
        node.input[data.draw(st.integers(0, len(node.input) - 1))] = new
    elif how == "output" and node is not None and node.output:
        node.output[0] = new
    elif how == "graph_output" and m.graph.output:
        m.graph.output[0].name = new
    elif how == "graph_input" and m.graph.input:
        m.graph.input[0].name = new


def _m_initializer(data, m):
    t = _pick(data, m.graph.initializer)
    if t is None:
        return
    how = data.draw(st.sampled_from(["dims", "dtype", "data", "duplicate", "shadow"]))
    if how == "dims":
        del t.dims[:]
        t.dims.extend(data.draw(st.lists(INTS, max_size=4)))
    elif how == "dtype":
        t.data_type = data.draw(st.sampled_from(ELEM_TYPES))
    elif how == "data":
        t.raw_data = t.raw_data[:data.draw(st.integers(0, len(t.raw_data)))]
    elif how == "duplicate":
        m.graph.initializer.append(t)
    elif how == "shadow" and m.graph.input:
        t.name = m.graph.input[0].name


def _m_nodes(data, m):
    nodes = m.graph.node
    if not len(nodes):
        return
    how = data.draw(st.sampled_from(["remove", "duplicate", "swap", "empty_name", "same_name"]))
    i = data.draw(st.integers(0, len(nodes) - 1))
    j = data.draw(st.integers(0, len(nodes) - 1))
    if how == "remove":
        del nodes[i]
    elif how == "duplicate":
        nodes.add().CopyFrom(nodes[i])
    elif how == "swap":
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[i])
        b.CopyFrom(nodes[j])
        nodes[i].CopyFrom(b)
        nodes[j].CopyFrom(a)
    elif how == "empty_name":
        nodes[i].name = ""
    else:
        nodes[i].name = nodes[j].name


def _m_model(data, m):
    how = data.draw(st.sampled_from(["opset", "ir", "no_output", "no_input", "two_outputs"]))
    if how == "opset":
        m.opset_import[0].version = data.draw(st.sampled_from([1, 7, 11, 12, 13, 17, 21, 99]))
    elif how == "ir":
        m.ir_version = data.draw(st.sampled_from([0, 1, 3, 7, 8, 10, 99]))
    elif how == "no_output" and m.graph.output:
        del m.graph.output[:]
    elif how == "no_input" and m.graph.input:
        del m.graph.input[0]
    elif how == "two_outputs" and m.graph.output:
        m.graph.output.add().CopyFrom(m.graph.output[0])


PROTO_MUTATIONS = [_m_attribute, _m_op_type, _m_shape, _m_drop_input, _m_dangling, _m_initializer, _m_nodes,
                   _m_model]


# -- IR text mutations --------------------------------------------------------------------
_TOKEN = re.compile(r"\s+|[%@][\w.]+|[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*|[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?"
                    r"|[A-Za-z_]\w*|->|\S")
_TYPE = re.compile(r"\b(f32|f64|i64|i32|i8|bool)\[([^\]]*)\]")
_ATTR = re.compile(r"(\w+) = (\[[^\]]*\]|[^,}]+)")
_KIND = re.compile(r"\b(nn|mp)\.[a-z0-9_]+")
LITERALS = ["0", "1", "-1", "2", "99999999999", "1.5", "-0.0", "nan", "inf", "true", "false", '"s"', "[]",
            "[1]", "[2, 2]", "[1, 1, 1, 1]", "[0, 0]", "[-1, 5]", "[1.5, 2]", "[[1]]", "foo", "f32"]
KINDS = ["nn.matmul", "nn.add", "nn.relu", "nn.gemm", "nn.conv2d", "nn.batchnorm", "nn.flatten", "nn.reshape",
         "nn.softmax", "nn.concat", "nn.maxpool2d", "nn.transpose", "nn.identity", "nn.squeeze", "nn.cast",
         "mp.dot", "mp.conv2d", "nn.matmull", "nn.bogus", "mp.nope", "x.y", "snn.lif"]
DTYPES = ["f32", "f64", "i64", "i32", "i8", "bool", "f16", "u8", "x"]
DIMS = ["0", "1", "2", "3", "8", "64", "-1", "N", "M", "99999999999", "", "1,1"]


def _t_tokens(data, text):
    toks = _TOKEN.findall(text)
    idx = [i for i, t in enumerate(toks) if not t.isspace()]
    if not idx:
        return text
    i, j = _pick(data, idx), _pick(data, idx)
    how = data.draw(st.sampled_from(["delete", "duplicate", "swap"]))
    if how == "delete":
        toks[i] = ""
    elif how == "duplicate":
        toks[i] = toks[i] + " " + toks[i]
    else:
        toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


def _t_chars(data, text):
    i = data.draw(st.integers(0, len(text)))
    special = list("%@{}[](),:=->.\"0123456789_ \n#/") + ["\x00", "é", "\u2028"]
    c = data.draw(st.one_of(st.sampled_from(special), st.characters(codec="utf-8")))
    return text[:i] + c + text[i + 1:]


def _t_dims(data, text):
    ms = list(_TYPE.finditer(text))
    m = _pick(data, ms)
    if m is None:
        return text
    dims = m.group(2).split(",") if m.group(2) else []
    how = data.draw(st.sampled_from(["change", "add", "remove"]))
    if how == "add" or not dims:
        dims.insert(data.draw(st.integers(0, len(dims))), data.draw(st.sampled_from(DIMS)))
    elif how == "remove":
        del dims[data.draw(st.integers(0, len(dims) - 1))]
    else:
        dims[data.draw(st.integers(0, len(dims) - 1))] = data.draw(st.sampled_from(DIMS))
    return text[:m.start(2)] + ",".join(dims) + text[m.end(2):]


def _t_dtype(data, text):
    m = _pick(data, list(_TYPE.finditer(text)))
    if m is None:
        return text
    return text[:m.start(1)] + data.draw(st.sampled_from(DTYPES)) + text[m.end(1):]


def _t_attr(data, text):
    ms = [m for m in _ATTR.finditer(text)]
    if not ms or data.draw(st.integers(0, 4)) == 0:   # add an attribute dict to some op
        m = _pick(data, list(re.finditer(r"\) : ", text)))
        if m is None:
            return text
        key = data.draw(st.sampled_from(["axis", "strides", "pads", "trans_b", "alpha", "bogus", "kernel"]))
        value = data.draw(st.sampled_from(LITERALS))
        return text[:m.start()] + f") {{{key} = {value}}}" + text[m.start() + 1:]
    m = _pick(data, ms)
    if data.draw(st.integers(0, 4)) == 0:
        return text[:m.start(1)] + data.draw(st.sampled_from(["bogus", "axis", "strides", "trans_a"])) + \
            text[m.end(1):]
    return text[:m.start(2)] + data.draw(st.sampled_from(LITERALS)) + text[m.end(2):]


def _t_kind(data, text):
    m = _pick(data, list(_KIND.finditer(text)))
    if m is None:
        return text
    return text[:m.start()] + data.draw(st.sampled_from(KINDS)) + text[m.end():]


def _t_lines(data, text):
    lines = text.split("\n")
    i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
    how = data.draw(st.sampled_from(["delete", "duplicate", "swap"]))
    if how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


TEXT_MUTATIONS = [_t_tokens, _t_chars, _t_dims, _t_dtype, _t_attr, _t_kind, _t_lines]


def _onnx_weights(model: Path) -> dict[str, np.ndarray] | None:
    """The weight table the ONNX frontend builds (to read back what `inspect` prints); None when
    the model does not load (inspect has then refused it already)."""
    from mpc.errors import MPCError
    from mpc.frontend import load_onnx
    try:
        return dict(load_onnx(str(model)).graph.weights)
    except MPCError:
        return None


# -- the properties -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ir_seeds():
    return _ir_seeds()


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mpc-fuzz-"))


@SETTINGS
@given(data=st.data())
def test_mutated_onnx_bytes(data):
    """Byte flips, truncation, insertion, deletion and splicing of serialized ONNX models."""
    seed = data.draw(st.integers(0, len(ONNX_SEEDS) - 1))
    blob, other = ONNX_SEEDS[seed], ONNX_SEEDS[1 - seed]
    for _ in range(data.draw(st.integers(1, 3))):
        blob = data.draw(st.sampled_from(BYTE_MUTATIONS))(data, blob, other)
    work = _workdir()
    try:
        model = work / "model.onnx"
        model.write_bytes(blob)
        convert_checked(model, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@SETTINGS
@given(data=st.data())
def test_mutated_onnx_protos(data):
    """Structured mutations: attribute values and types, op types, shapes, dropped and dangling
    inputs, initializer dims/dtypes/data, node order, opset and IR version."""
    m = onnx.ModelProto()
    m.ParseFromString(ONNX_SEEDS[data.draw(st.integers(0, len(ONNX_SEEDS) - 1))])
    for _ in range(data.draw(st.integers(1, 3))):
        data.draw(st.sampled_from(PROTO_MUTATIONS))(data, m)
    work = _workdir()
    try:
        model = work / "model.onnx"
        model.write_bytes(m.SerializeToString())
        convert_checked(model, work)
        inspect_roundtrip(model, work, _onnx_weights(model))
        verify_checked(model)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@SETTINGS
@given(data=st.data())
def test_mutated_ir_text(ir_seeds, data):
    """Token and character edits, changed dims, dtypes and attribute values, unknown op kinds and
    shuffled lines of printed IR: `inspect` and `convert` both refuse cleanly or succeed; what
    `inspect` prints parses back to the same text."""
    text, weights = ir_seeds[data.draw(st.integers(0, len(ir_seeds) - 1))]
    for _ in range(data.draw(st.integers(1, 3))):
        text = data.draw(st.sampled_from(TEXT_MUTATIONS))(data, text)
    work = _workdir()
    try:
        src = work / "src"
        src.mkdir()
        np.savez(src / "weights.npz", **weights)
        (src / "model.mpc").write_text(text, encoding="utf-8")
        inspect_roundtrip(src / "model.mpc", work, weights)
        convert_checked(src / "model.mpc", work)
        verify_checked(src / "model.mpc")
    finally:
        shutil.rmtree(work, ignore_errors=True)
