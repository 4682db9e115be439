"""The reference oracle: runs the source model in onnxruntime and compares it with a converted
graph run by the interpreter (outputs, top-1 agreement, accuracy, per-layer Pearson correlation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from mpc.data import Dataset
from mpc.errors import BadModel
from mpc.ir import Graph, run


def ort_session(model: onnx.ModelProto, extra_outputs: list[str] = (), label: str | None = None):
    """An onnxruntime CPU session of `model` that also returns the named intermediate tensors."""
    import onnxruntime as ort
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in extra_outputs:
        if name not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4   # fatal only: a run-time failure becomes one BadModel line, not a log too
    opts.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise BadModel(label or model.graph.name or "model", f"onnxruntime cannot run it: {_first_line(e)}") from None


def _last_by_location(graph: Graph, key) -> dict:
    """key(op.loc) -> the result of the last single-result op carrying that location."""
    return {key(op.loc): op.result for op in graph.ops if len(op.results) == 1 and key(op.loc) is not None}


def layer_pairs(graph: Graph, source: onnx.ModelProto | Graph) -> list[tuple[str, str, object]]:
    """(layer name, source tensor, converted value) for each source layer the converted graph still
    computes: the last converted op carrying a layer's location stands for that layer's output.

    An ONNX source is matched by node name (its Constant, Identity and Dropout nodes are not layers);
    an IR source by location, the source tensor being the last value computed there."""
    last = _last_by_location(graph, lambda loc: loc.node)
    if isinstance(source, Graph):
        last = _last_by_location(graph, lambda loc: loc if loc.known else None)
        src = _last_by_location(source, lambda loc: loc if loc.known else None)
        return [(str(loc), v.name, last[loc]) for loc, v in src.items() if loc in last]
    return [(node.name, node.output[0], last[node.name]) for node in source.graph.node
            if node.name in last and node.output and node.op_type not in ("Constant", "Identity", "Dropout")]


@dataclass
class Comparison:
    """The numbers `mpc verify` prints."""

    samples: int
    max_abs_err: float
    mean_abs_err: float
    top1_agreement: float | None
    source_accuracy: float | None
    converted_accuracy: float | None
    layers: list[dict] = field(default_factory=list)
    top1_degenerate: bool | None = None   # every sample has the same source class (None: no top-1)
    top1_note: str | None = None


def _top1(a: np.ndarray) -> np.ndarray | None:
    return a.reshape(a.shape[0], -1).argmax(axis=1) if a.ndim >= 2 and a.size else None


def compare(source: dict[str, np.ndarray], converted: dict[str, np.ndarray], labels: np.ndarray | None,
            layers: list[dict]) -> Comparison:
    """Metrics over matching outputs (the first output decides top-1 and accuracy)."""
    errs = [np.abs(np.asarray(converted[k], np.float64) - np.asarray(source[k], np.float64)) for k in source]
    first = next(iter(source))
    ts, tc = _top1(np.asarray(source[first])), _top1(np.asarray(converted[first]))
    n = (np.shape(source[first])[:1] or (1,))[0]   # a 0-d output is one sample
    note = _degenerate_note(ts)
    return Comparison(
        samples=int(n),
        max_abs_err=float(max(e.max(initial=0.0) for e in errs)) if errs else 0.0,
        mean_abs_err=float(np.mean([e.mean() for e in errs if e.size])) if any(e.size for e in errs) else 0.0,
        top1_agreement=None if ts is None else float((ts == tc).mean()),
        source_accuracy=None if labels is None or ts is None else float((ts == labels).mean()),
        converted_accuracy=None if labels is None or tc is None else float((tc == labels).mean()),
        layers=layers, top1_degenerate=None if ts is None else note is not None, top1_note=note)


def _degenerate_note(ts: np.ndarray | None) -> str | None:
    """Why a top-1 agreement over samples that all share one source class proves little, or None."""
    if ts is None or not (ts == ts[0]).all():
        return None
    who = "the only sample has" if ts.size == 1 else f"all {ts.size} samples have"
    return f"{who} source class {int(ts[0])}: agreement says little"


def run_source(model: onnx.ModelProto | None, source_graph: Graph | None, data: Dataset,
               tensors: list[str], aliases: dict[str, str], label: str | None = None) -> dict[str, np.ndarray]:
    """Outputs (and requested intermediate tensors) of the source: onnxruntime, or the interpreter
    on the source graph when the source is IR text; errors name the model as `label` (its file)."""
    if model is None:
        return run(source_graph, data.feeds)
    sess = ort_session(model, tensors, label)
    ir_to_onnx = {ir: ox for ox, ir in aliases.items()}
    feeds = _source_dtypes(model, {ir_to_onnx.get(k, k): v for k, v in data.feeds.items()})
    names = [o.name for o in sess.get_outputs()]
    step = static_batch(model)
    if step is None or data.size <= step:
        return dict(zip(names, _ort_run(label or model.graph.name or "model", sess, names, feeds)))
    # onnxruntime enforces a static batch: run the samples in slices of it and join them
    parts = [_ort_run(label or model.graph.name or "model", sess, names, {k: v[i:i + step] for k, v in feeds.items()})
             for i in range(0, data.size, step)]
    return {name: np.concatenate([p[j] for p in parts]) if parts[0][j].ndim else parts[0][j]
            for j, name in enumerate(names)}


def _source_dtypes(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds of inputs that mpc computes in float32 (float16, bfloat16) cast to the type the source declares."""
    from mpc.frontend.onnx import widened
    narrow = {vi.name: onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
              for vi in model.graph.input if vi.name in widened(model)}
    return {k: v.astype(narrow[k]) if k in narrow else v for k, v in feeds.items()}


def _ort_run(label: str, sess, names: list[str], feeds: dict[str, np.ndarray]) -> list:
    """sess.run, with onnxruntime's run-time failures (integer division by zero, ...) as BadModel."""
    try:
        return sess.run(names, feeds)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise BadModel(label, f"onnxruntime failed to run it: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def static_batch(model: onnx.ModelProto) -> int | None:
    """The batch onnxruntime will insist on: the fixed leading dim shared by every graph input, or None."""
    inits = {t.name for t in model.graph.initializer}
    lead = set()
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        lead.add(int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None)
    return lead.pop() if len(lead) == 1 and None not in lead else None
