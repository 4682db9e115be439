"""`mpc verify`: convert in memory, run the source (onnxruntime, or the interpreter for IR text)
and the converted graph (interpreter) on the same data, and compare outputs and layers.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from mpc.compiler import Settings, compile_model
from mpc.data import batches, load_data, random_data
from mpc.errors import BadFlag, BadInput
from mpc.frontend import load
from mpc.ir import Graph, clone, run
from mpc.oracle import compare, layer_map, run_source


class _Pearson:
    """Streaming Pearson correlation of two flattened sequences of arrays."""

    def __init__(self):
        self.s = np.zeros(6)

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a = np.asarray(a, np.float64).ravel()
        b = np.asarray(b, np.float64).ravel()
        if a.shape != b.shape:
            return
        self.s += [a.size, a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum()]

    def value(self) -> float | None:
        n, sa, sb, saa, sbb, sab = self.s
        if n == 0:
            return None
        cov, va, vb = sab - sa * sb / n, saa - sa * sa / n, sbb - sb * sb / n
        den = np.sqrt(max(va, 0.0) * max(vb, 0.0))
        return None if den <= 1e-300 else float(np.clip(cov / den, -1.0, 1.0))


@dataclass(frozen=True)
class Thresholds:
    """The pass/fail checks of `mpc verify` (None: not checked); fractions for agreement and accuracy."""

    max_abs_err: float | None = None
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None


def _ir_layers(source: Graph, converted: Graph) -> list[tuple[str, str, Any]]:
    last_src = {op.loc: op.result for op in source.ops if len(op.results) == 1 and op.loc.known}
    last_cv = {op.loc: op.result for op in converted.ops if len(op.results) == 1 and op.loc.known}
    return [(str(loc), v.name, last_cv[loc]) for loc, v in last_src.items() if loc in last_cv]


def verify(spec: str, settings: Settings, data_path: str | None, samples: int = 256,
           thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """Compare source and converted model; returns the `--json` object, `checks` included."""
    if thresholds.max_accuracy_drop is not None and not data_path:
        raise BadFlag("--max-accuracy-drop needs labels: give --data with a 'labels' array")
    loaded = load(spec, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch)
    source_graph = clone(loaded.graph)
    compiled = compile_model(spec, settings, loaded=loaded)
    graph = compiled.graph
    if not graph.inputs or not graph.outputs:
        raise BadInput(f"{spec}: the model has no {'inputs' if not graph.inputs else 'outputs'}: nothing to verify")
    data = load_data(data_path, source_graph, loaded.input_names) if data_path else \
        random_data(source_graph, samples, settings.seed)
    if thresholds.max_accuracy_drop is not None and data.labels is None:
        raise BadFlag(f"--max-accuracy-drop needs labels: {data_path} has no 'labels' array")
    if loaded.onnx_model is not None:
        layers = layer_map(graph, loaded.onnx_model)
    else:
        layers = _ir_layers(source_graph, graph)
    stats = {name: _Pearson() for name, _, _ in layers}
    src_out, cv_out = {}, {}
    out_names = [v.name for v in graph.outputs]
    total = (data.size + 255) // 256
    for feeds, _ in tqdm(batches(data, 256), total=total, desc="verify", file=sys.stderr, delay=2,
                         disable=settings.quiet, leave=False):
        batch = type(data)(feeds, None, data.source)
        ref = run_source(loaded.onnx_model, source_graph, batch, [t for _, t, _ in layers], loaded.input_names)
        got = run(graph, feeds, keep_all=True)
        for name, tensor, value in layers:
            if tensor in ref and value.name in got:
                stats[name].add(ref[tensor], got[value.name])
        for i, name in enumerate(out_names):
            src_name = loaded.onnx_model.graph.output[i].name if loaded.onnx_model is not None else \
                source_graph.outputs[i].name
            src_out.setdefault(name, []).append(ref[src_name])
            cv_out.setdefault(name, []).append(got[name])
    src = {k: np.concatenate(v) for k, v in src_out.items()}
    cv = {k: np.concatenate(v) for k, v in cv_out.items()}
    layer_rows = [{"name": name, "pearson": stats[name].value()} for name, _, _ in layers]
    cmp = compare(src, cv, data.labels, layer_rows)
    rel = max(float((np.abs(cv[k].astype(np.float64) - src[k]) / np.maximum(1.0, np.abs(src[k]))).max())
              for k in src) if src else 0.0
    result = {"target": settings.target, "model": spec, "data": data.source, "samples": data.size,
            "max_abs_err": cmp.max_abs_err, "mean_abs_err": cmp.mean_abs_err, "max_rel_err": rel,
            "top1_agreement": cmp.top1_agreement, "source_accuracy": cmp.source_accuracy,
            "converted_accuracy": cmp.converted_accuracy, "layers": cmp.layers}
    result["checks"] = run_checks(result, thresholds)
    return result


def run_checks(r: dict[str, Any], t: Thresholds) -> list[dict[str, Any]]:
    """One entry per requested check: name, measured value, threshold, passed, and its message."""
    checks = []
    if t.max_abs_err is not None:
        v = r["max_abs_err"]
        checks.append({"name": "max_abs_err", "value": v, "threshold": t.max_abs_err, "passed": v <= t.max_abs_err,
                       "message": f"max abs err {v:.6g} > {t.max_abs_err:.6g}"})
    if t.min_agreement is not None:
        v = r["top1_agreement"]
        if v is None:
            raise BadFlag("--min-agreement: the first output has no class axis, so top-1 agreement is undefined")
        checks.append({"name": "min_agreement", "value": v, "threshold": t.min_agreement,
                       "passed": v >= t.min_agreement,
                       "message": f"top-1 agreement {_pct(v)} < {_pct(t.min_agreement)}"})
    if t.max_accuracy_drop is not None:
        if r["source_accuracy"] is None or r["converted_accuracy"] is None:
            raise BadFlag("--max-accuracy-drop needs labels: give --data with a 'labels' array")
        v = r["source_accuracy"] - r["converted_accuracy"]
        checks.append({"name": "max_accuracy_drop", "value": v, "threshold": t.max_accuracy_drop,
                       "passed": v <= t.max_accuracy_drop,
                       "message": f"accuracy drop {_pct(v)} > {_pct(t.max_accuracy_drop)}"})
    return checks


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def print_table(r: dict[str, Any]) -> None:
    """The human-readable verify table on stdout."""
    print(f"mpc verify: {r['model']} --target {r['target']} on {r['samples']} samples ({r['data']})")
    print(f"  max abs err      {r['max_abs_err']:.3g}")
    print(f"  max rel err      {r['max_rel_err']:.3g}   (|err| / max(1, |source|))")
    print(f"  mean abs err     {r['mean_abs_err']:.3g}")
    print(f"  top-1 agreement  {_pct(r['top1_agreement'])}")
    print(f"  accuracy         source {_pct(r['source_accuracy'])}   converted {_pct(r['converted_accuracy'])}")
    if r["layers"]:
        width = max(len(row["name"]) for row in r["layers"]) + 2
        print(f"\n  {'layer':<{width}} pearson")
        for row in r["layers"]:
            p = "-" if row["pearson"] is None else f"{row['pearson']:.6f}"
            print(f"  {row['name']:<{width}} {p}")
