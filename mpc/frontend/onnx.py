"""The ONNX frontend: read and check an ONNX model, then import it into a verified IR graph.

Reading decodes the protobuf (any decode error is a BadModel naming the file), refuses external
data that points outside the model's folder, runs onnx.checker and strict shape inference.
Importing walks the nodes in order through the per-op handlers of `onnx_ops`: graph inputs keep
their declared types (unnamed dynamic dims become d0, d1, ...), initializers and Constant nodes
become weights when an op uses them (integer shape/axes constants are consumed at import), every
op carries the ONNX node name as its location and graph outputs keep their (sanitized) names.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, numpy_helper

import mpc.frontend.onnx_ops_spatial  # noqa: F401  (registers the spatial/normalization/activation handlers)
from mpc.errors import BadFlag, BadModel, Location, MPCError, UnsupportedOp
from mpc.frontend.batch import HINT, batch_dim, check_batch
from mpc.frontend.onnx_ops import HANDLERS, ONNX_DTYPES, Known, Node, supported_ops
from mpc.frontend.onnx_ops_rnn import drop_zero_initial_states  # (also registers the RNN/GRU/LSTM handlers)
from mpc.frontend.onnx_ops_tensor import TENSOR_OPS  # noqa: F401  (registers the tensor/logic/reduction handlers)
from mpc.ir import Graph, InferError, Op, TensorType, Value, lookup, sanitize, verify_graph
from mpc.ir.types import DType

MIN_OPSET = 13
MAX_OPSET = onnx.defs.onnx_opset_version()
# readable names for exporter-generated initializers ('onnx::Conv_26' feeding '/conv/Conv' -> 'conv.weight')
_ROLES = {"Conv": ("input", "weight", "bias"), "Gemm": ("input", "weight", "bias"),
          "MatMul": ("input", "weight"),
          "BatchNormalization": ("input", "weight", "bias", "running_mean", "running_var")}


# -- reading ------------------------------------------------------------------------------
def read_model(source: str | os.PathLike | bytes, label: str | None = None,
               outputs: tuple[str, ...] = ()) -> onnx.ModelProto:
    """Decode, check and shape-infer an ONNX model from a path or bytes; BadModel when it cannot.
    With `outputs`, only those graph outputs are kept, and the nodes, inputs and initializers that
    feed them (see `keep_outputs`), before anything else is checked."""
    label = label or (str(source) if not isinstance(source, bytes) else "<bytes>")
    data = source if isinstance(source, bytes) else _read_bytes(Path(source), label)
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeWarning, ValueError, TypeError) as e:
        reason = f"not a valid ONNX model (cannot decode the protobuf: {_first_line(e)})"
        raise BadModel(label, reason) from None
    if not model.ir_version or not model.HasField("graph"):
        raise BadModel(label, "not a valid ONNX model (no ir_version or no graph)")
    base = None if isinstance(source, bytes) else Path(source).parent
    _load_external_data(model, base, label)
    if outputs:
        keep_outputs(model, outputs, label)
    _check_decoded(model.graph, label)
    _check_opsets(model)
    _check_recurrent(model)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise BadModel(label, f"invalid ONNX model: {_first_line(e)}") from None
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        raise BadModel(label, f"ONNX shape inference failed: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _read_bytes(path: Path, label: str) -> bytes:
    if not path.exists():
        raise BadModel(label, "no such file")
    if path.is_dir():
        raise BadModel(label, "is a directory, expected an ONNX file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise BadModel(label, f"cannot read: {e.strerror or e}") from None


def _tensors(graph: onnx.GraphProto):
    """Every TensorProto of a graph: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _tensors(g)


def _external_path(tensor: onnx.TensorProto, base: Path | None, label: str) -> Path:
    """The file behind an external tensor, refusing any location outside the model's folder."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if base is None:
        raise BadModel(label, f"tensor '{tensor.name}' uses external data, which needs the model's folder")
    if not location or os.path.isabs(location) or Path(location).drive or ".." in Path(location).parts:
        raise BadModel(label, f"external data of tensor '{tensor.name}' points outside the model's folder "
                              f"({location!r}); refused")
    root = base.resolve()
    path = (root / location).resolve()
    if root != path and root not in path.parents:
        raise BadModel(label, f"external data of tensor '{tensor.name}' points outside the model's folder "
                              f"({location!r} resolves to '{path}'); refused")
    if not path.is_file():
        raise BadModel(label, f"external data file '{location}' of tensor '{tensor.name}' not found")
    return path


def _load_external_data(model: onnx.ModelProto, base: Path | None, label: str) -> None:
    """Read external tensors in place after checking where they point."""
    for t in _tensors(model.graph):
        if not onnx.external_data_helper.uses_external_data(t):
            continue
        path = _external_path(t, base, label)
        info = {e.key: e.value for e in t.external_data}
        offset, length = int(info.get("offset", 0) or 0), info.get("length")
        with open(path, "rb") as f:
            f.seek(offset)
            raw = f.read(int(length)) if length else f.read()
        if length and len(raw) != int(length):
            raise BadModel(label, f"external data file '{info['location']}' is truncated "
                                  f"(tensor '{t.name}' wants {length} bytes at offset {offset})")
        t.raw_data = raw
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]


def _check_decoded(graph: onnx.GraphProto, label: str) -> None:
    """What the checker lets through: names that are not UTF-8, tensors whose data do not fit their dims."""
    values = [*graph.input, *graph.output, *graph.value_info]
    names = [graph.name] + [v.name for v in values]
    names += [d.dim_param for v in values for d in v.type.tensor_type.shape.dim]
    for n in graph.node:
        names += [n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)]
    if any(not isinstance(x, str) for x in names):
        raise BadModel(label, "not a valid ONNX model (a name is not valid UTF-8)")
    for t in _tensors(graph):
        try:
            numpy_helper.to_array(t)
        except (ValueError, TypeError, KeyError) as e:
            raise BadModel(label, f"tensor '{t.name}' is malformed: {_first_line(e)}") from None


def _check_opsets(model: onnx.ModelProto) -> None:
    """Only the default domain, opset 13 up to what the installed onnx knows."""
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    version = versions.get("ai.onnx")
    if version is None or not MIN_OPSET <= version <= MAX_OPSET:
        raise UnsupportedOp("opset", Location(), f"opset version {version} of domain 'ai.onnx' is not supported "
                                                 f"(expected {MIN_OPSET} to {MAX_OPSET})")
    for i, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            outs = ", ".join(o.name for o in model.graph.output)
            raise UnsupportedOp(node.op_type, Location(node=node.name or f"{node.op_type}_{i}"),
                                f"domain '{node.domain}' is not supported (only the default ONNX domain); if it "
                                f"only post-processes the outputs (like scikit-learn's ZipMap), keep the outputs "
                                f"before it with --outputs NAME,... (graph outputs: {outs})")


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Every name the subgraphs of a node (If, Loop, Scan bodies) read, outer-scope names included."""
    names: set[str] = set()
    graphs = [g for a in node.attribute for g in ([a.g] if a.HasField("g") else []) + list(a.graphs)]
    for n in (n for g in graphs for n in g.node):
        names.update(n.input)
        names |= _subgraph_inputs(n)
    return names


def keep_outputs(model: onnx.ModelProto, names: tuple[str, ...], label: str) -> None:
    """Keep only the graph outputs `names` (in that order; a tensor a node computes becomes an output)
    and drop, in place, the nodes, graph inputs, initializers and value infos that no longer feed them;
    BadFlag for a name that is neither."""
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    inner = {o for n in graph.node for o in n.output if o} - set(outputs)
    for n in names:
        if n not in outputs and n not in inner:
            raise BadFlag(f"--outputs: '{n}' is not a graph output or a tensor computed by {label} (its outputs: "
                          f"{', '.join(outputs) or 'none'})")
    if any(n in inner for n in names):   # an inner tensor becomes an output, typed by ONNX shape inference
        try:
            typed = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        except (onnx.shape_inference.InferenceError, ValueError) as e:
            raise BadModel(label, f"ONNX shape inference failed: {_first_line(e)}") from None
        outputs |= {n: typed.get(n, onnx.ValueInfoProto(name=n)) for n in names if n in inner}
    if len(set(names)) != len(names):
        raise BadFlag(f"--outputs: a name is given twice ({', '.join(names)})")
    needed, kept = set(names), []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            needed |= _subgraph_inputs(node)
    keep = [outputs[n] for n in names]
    for field, items in (("output", keep), ("node", kept[::-1]),
                         ("input", [v for v in graph.input if v.name in needed]),
                         ("initializer", [t for t in graph.initializer if t.name in needed]),
                         ("value_info", [v for v in graph.value_info if v.name in needed])):
        items = list(items)
        del getattr(graph, field)[:]
        getattr(graph, field).extend(items)


RECURRENT = ("LSTM", "GRU", "RNN")


def _check_recurrent(model: onnx.ModelProto) -> None:
    """Recurrent layers are refused by name, before the shape ops exporters put around them (their
    initial states, built from the dynamic batch dim) fail on their own with a less useful message."""
    drop_zero_initial_states(model)   # recurrent layers import through mpc.frontend.onnx_ops_rnn
    for i, node in enumerate(model.graph.node):
        if node.op_type in RECURRENT and node.op_type not in HANDLERS:
            raise UnsupportedOp(node.op_type, Location(node=node.name or f"{node.op_type}_{i}"),
                                "recurrent layers are not supported yet")


# -- importing ----------------------------------------------------------------------------
def _ident(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


def _readable(hint: str) -> str:
    """A weight name from an ONNX tensor name: '/fc/Constant_output_0' -> 'fc.Constant'."""
    s = hint.removeprefix("onnx::").replace("::", ".").replace("/", ".")
    s = re.sub(r"_output_0$", "", s).strip(".")
    return sanitize(s) if s else "const"


class Importer:
    """Builds the IR graph of one ONNX graph; handlers call back into it."""

    def __init__(self, model: onnx.ModelProto, name: str, label: str, static_batch: bool = False):
        self.model, self.onnx_graph, self.label = model, model.graph, label
        self.static_batch = static_batch
        self.batch: str | None = None   # the symbol a static leading 1 became (see mpc.frontend.batch)
        self.graph = Graph(sanitize(name))
        self.unnamed = 0
        self.assigned: set[str] = set()
        self.env: dict[str, Value | Known] = {}
        self.weights: dict[int, Value] = {}
        self.taken: set[str] = set()
        self.dims: dict[str, str] = {}
        self.uses = Counter(i for n in model.graph.node for i in n.input)
        self.uses.update(o.name for o in model.graph.output)
        self.input_names: dict[str, str] = {}
        self.output_names: dict[str, str] = {}

    # -- names --------------------------------------------------------------------------
    def unique(self, name: str) -> str:
        """A sanitized value name not taken yet (reserved input/output names included)."""
        base = sanitize(name)
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def dim(self, d: onnx.TensorShapeProto.Dimension) -> int | str:
        """An input dim: its value, its (sanitized) dim_param, or a stable d0, d1, ... when unnamed."""
        if d.HasField("dim_value"):
            return int(d.dim_value)
        if d.HasField("dim_param"):
            return self.dims[d.dim_param]
        while f"d{self.unnamed}" in self.dims.values():
            self.unnamed += 1
        self.unnamed += 1
        return f"d{self.unnamed - 1}"

    # -- the handler interface ---------------------------------------------------------
    def known(self, node: Node, i: int) -> Known | None:
        """The import-time constant behind input i, or None when it is computed at run time."""
        v = self.env[node.inputs[i]]
        return v if isinstance(v, Known) else None

    def type(self, node: Node, i: int) -> TensorType:
        """The IR type of input i (int64 for symbolic shape tensors)."""
        v = self.env[node.inputs[i]]
        if isinstance(v, Value):
            return v.type
        if v.array.dtype == object:
            return TensorType(DType.i64, v.array.shape)
        return TensorType(_dtype(v, node.op_type, node.name), v.array.shape)

    def value(self, node: Node, i: int) -> Value:
        """Input i as an IR value: constants become weights here, on first use."""
        v = self.env[node.inputs[i]]
        return v if isinstance(v, Value) else self.weight(v, node.op_type, node.name, i)

    def used(self, onnx_name: str) -> bool:
        """Whether a node or the graph outputs use this ONNX value."""
        return self.uses[onnx_name] > 0

    def emit(self, node: Node, kind: str, operands: list[Value], attrs=None,
             step: str | None = None) -> Value:
        """Append an op for `node`, its result named after the node's first output (or, for an
        intermediate `step` of a node imported as several ops, after the output and the step)."""
        opdef = lookup(kind)
        attrs = attrs if attrs is not None else opdef.attrs()
        try:
            types = opdef.infer([v.type for v in operands], attrs)
        except InferError as e:
            raise node.reject(str(e)) from None
        name = self.unique(f"{node.outputs[0]}.{step}") if step else self.result_name(node.outputs[0])
        results = [Value(name, t) for t in types]
        self.graph.ops.append(Op(kind, operands, results, attrs, Location(node=node.name)))
        return results[0]

    # -- helpers -----------------------------------------------------------------------
    def result_name(self, onnx_name: str) -> str:
        """The IR name of a result: a graph output's reserved name the first time, else a fresh one."""
        name = self.output_names.get(onnx_name)
        if name is None or name in self.assigned:
            name = self.unique(onnx_name)
        self.assigned.add(name)
        return name

    def weight(self, k: Known, op_type: str, node_name: str, i: int = 0) -> Value:
        """The weight holding a known tensor (added once, named readably)."""
        if id(k) in self.weights:
            return self.weights[id(k)]
        if k.array.dtype == object:
            raise UnsupportedOp(op_type, Location(node=node_name),
                                f"tensor '{k.hint}' = {_show_dims(k.array)} depends on a dynamic dim and "
                                f"cannot be a run-time operand")
        _dtype(k, op_type, node_name)
        name = _readable(k.hint)
        roles = _ROLES.get(op_type, ())
        if k.hint.startswith("onnx::") and i < len(roles) and "/" in node_name:
            name = sanitize(".".join(p for p in node_name.split("/")[:-1] if p) + "." + roles[i])
        v = self.graph.add_weight(name, k.array)
        self.weights[id(k)] = v
        return v

    # -- the walk ----------------------------------------------------------------------
    def run(self) -> Graph:
        """Import inputs, nodes and outputs; the result is verified."""
        self.reserve_names()
        for init in self.onnx_graph.initializer:
            self.env[init.name] = Known(numpy_helper.to_array(init), init.name)
        self.add_inputs()
        for i, proto in enumerate(self.onnx_graph.node):
            proto.name = proto.name or f"{proto.op_type}_{i}"  # the oracle matches layers by node name
            self.import_node(Node(proto, proto.name))
        self.add_outputs()
        verify_graph(self.graph)
        return self.graph

    def reserve_names(self) -> None:
        """Input and output names (and named dims) first, so that nothing else takes them."""
        inits = {t.name for t in self.onnx_graph.initializer}
        for vi in self.onnx_graph.input:
            if vi.name not in inits:
                self.input_names[vi.name] = self.unique(vi.name)
                for d in vi.type.tensor_type.shape.dim:
                    if d.HasField("dim_param"):
                        self.dims.setdefault(d.dim_param, _ident(d.dim_param))
        for vi in self.onnx_graph.output:
            self.output_names[vi.name] = self.unique(vi.name)
        if not self.static_batch:
            lead = [_leading_dim(vi) for vi in self.onnx_graph.input if vi.name in self.input_names]
            self.batch = batch_dim(lead, set(self.dims.values()))

    def add_inputs(self) -> None:
        """Graph inputs that are not initializers, with their declared types."""
        for vi in self.onnx_graph.input:
            if vi.name not in self.input_names:
                continue
            tt = vi.type.tensor_type
            dtype = input_dtype(vi, self.label)
            if not tt.HasField("shape"):
                raise BadModel(self.label, f"input '{vi.name}' has no shape (its rank must be known)")
            dims = tuple(self.dim(d) for d in tt.shape.dim)
            if self.batch is not None:
                dims = (self.batch,) + dims[1:]
            v = Value(self.input_names[vi.name], TensorType(dtype, dims))
            self.graph.inputs.append(v)
            self.env[vi.name] = v

    def import_node(self, node: Node) -> None:
        """Check the node's attributes against its handler's declared set, then run the handler."""
        h = HANDLERS.get(node.op_type)
        if h is None:
            raise UnsupportedOp(node.op_type, Location(node=node.name),
                                f"no handler for this op type (supported: {', '.join(supported_ops())})")
        for key in sorted(node.attrs):
            if key not in h.attrs:
                raise node.reject("unknown attribute", key)
        try:
            result = h.fn(self, node)
        except (ValueError, IndexError) as e:  # NumPy refused to fold known tensors: an inconsistent model
            raise BadModel(self.label, f"node '{node.name}' ({node.op_type}): {_first_line(e)}") from None
        self.env[node.outputs[0]] = result

    def add_outputs(self) -> None:
        """Graph outputs under their ONNX names; an identity where the value is an input, a
        constant or already named otherwise."""
        inputs = {id(v) for v in self.graph.inputs}
        for vi in self.onnx_graph.output:
            want = self.output_names[vi.name]
            v = self.env[vi.name]
            if isinstance(v, Known) or id(v) in inputs or v.name != want:
                src = v if isinstance(v, Value) else self.weight(v, "graph output", vi.name)
                ident = Op("nn.identity", [src], [Value(want, src.type)], lookup("nn.identity").attrs(),
                           Location(node=f"output:{vi.name}"))
                self.graph.ops.append(ident)
                v = ident.result
            self.graph.outputs.append(v)


# element types accepted at the graph boundary: the IR's own, and float16/bfloat16 computed in float32
BOUNDARY_DTYPES = {**ONNX_DTYPES, TensorProto.INT16: DType.i16, TensorProto.UINT8: DType.u8,
                   TensorProto.UINT16: DType.u16, TensorProto.UINT32: DType.u32, TensorProto.UINT64: DType.u64,
                   TensorProto.FLOAT16: DType.f32, TensorProto.BFLOAT16: DType.f32}
WIDENED = {TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16"}


def elem_name(elem_type: int) -> str:
    """ONNX's lower-case name of an element type ('float16', 'uint8', 'float8e4m3fn')."""
    return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type in onnx.TensorProto.DataType.values() \
        else f"<element type {elem_type}>"


def input_dtype(vi: onnx.ValueInfoProto, label: str) -> DType:
    """The IR element type of a graph input; BadModel naming the refused type otherwise."""
    accepted = ", ".join(elem_name(t) for t in sorted(BOUNDARY_DTYPES))
    kind = vi.type.WhichOneof("value")
    if kind != "tensor_type":
        what = {"sequence_type": "a sequence", "optional_type": "an optional", "map_type": "a map",
                "sparse_tensor_type": "a sparse tensor"}.get(kind or "", "a value of no type")
        raise BadModel(label, f"input '{vi.name}' is {what}, not a tensor "
                              f"(expected a tensor of {accepted})")
    elem = vi.type.tensor_type.elem_type
    if elem not in BOUNDARY_DTYPES:
        raise BadModel(label, f"input '{vi.name}' has element type {elem_name(elem)}, which is not supported "
                              f"(expected one of {accepted})")
    return BOUNDARY_DTYPES[elem]


def widened(model: onnx.ModelProto) -> dict[str, str]:
    """Graph inputs and outputs whose element type mpc computes in float32: name -> 'float16'/'bfloat16'."""
    values = [*model.graph.input, *model.graph.output]
    return {vi.name: WIDENED[vi.type.tensor_type.elem_type] for vi in values
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type in WIDENED}


def _leading_dim(vi: onnx.ValueInfoProto) -> int | None:
    """The first dim of an input when it is a fixed number, else None."""
    dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None


def _dtype(k: Known, op_type: str, node_name: str) -> DType:
    try:
        return DType.from_numpy(k.array.dtype)
    except ValueError:
        raise UnsupportedOp(op_type, Location(node=node_name),
                            f"tensor '{k.hint}' has element type {k.array.dtype.name}, which is not supported") from None


def _show_dims(a: np.ndarray) -> str:
    return "[" + ", ".join("?" if x is None else str(x) for x in a.reshape(-1)) + "]"


def import_model(model: onnx.ModelProto, label: str, fallback_name: str = "model", static_batch: bool = False
                 ) -> tuple[Graph, dict[str, str], dict[str, str]]:
    """Import a checked model; returns the verified graph and the ONNX -> IR input and output names.

    The graph is named after the file (`fallback_name`, its stem), or the ONNX graph's name when the
    model came from bytes; exporters' generic names such as `main_graph` say nothing about the model.
    Unnamed nodes get their stable generated name ('Gemm_3') written into `model` too, so that
    op locations and the source model agree.
    A leading 1 on every input becomes a symbolic batch unless `static_batch` (mpc.frontend.batch);
    when the graph does not follow that batch, the error says so and suggests --static-batch.
    """
    name = fallback_name if fallback_name != "model" else (model.graph.name or fallback_name)
    imp = Importer(model, name, label, static_batch)
    try:
        graph = imp.run()
    except MPCError as e:
        if imp.batch is None:
            raise
        Importer(model, name, label, static_batch=True).run()   # fails the same way: not the batch's fault
        raise BadModel(label, f"the model has a static batch of 1 that mpc reads as a batch dim, but it does not "
                              f"import that way ({e}); {HINT}") from None
    if imp.batch is not None:
        check_batch(graph, imp.batch, label)
    return graph, imp.input_names, imp.output_names
