"""`mpc verify`: convert in memory, run the source (onnxruntime, or the interpreter for IR text)
and the converted graph (interpreter) on the same data, and compare outputs and layers; or, with
`--source`, take an already converted graph as it is and compare it with its source. Optional
checks (thresholds) turn the comparison into a pass/fail gate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpc.data import Dataset, Pearson, batches, load_data, random_data
from mpc.driver.compiler import Settings
from mpc.driver.oracle import compare, layer_pairs, run_source
from mpc.errors import BadFlag, BadInput
from mpc.frontend import Loaded, load, load_mpc
from mpc.ir import Graph, check_feeds, clone, run
from mpc.mp.fidelity import NeuronPearson, write_plots
from mpc.progress import progress_bar


@dataclass(frozen=True)
class Thresholds:
    """The pass/fail checks of `mpc verify` (None: not checked); fractions for agreement and accuracy."""

    max_abs_err: float | None = None
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None


def verify(spec: str, settings: Settings, data_path: str | None, samples: int = 256,
           thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """Convert `spec` in memory and compare it with its source; returns the `--json` object."""
    _labels_given(thresholds, data_path)
    loaded = load(spec, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch,
                  outputs=settings.outputs)
    if loaded.onnx_model is None and any(op.kind.startswith("mp.") for op in loaded.graph.ops):
        raise BadInput(f"{spec} is already converted (it has mp ops): converting it again compares it with "
                       f"itself; check it against its source with: mpc verify {spec} --source MODEL.onnx")
    source_graph = clone(loaded.graph)
    from mpc.driver.verify_fx import compile_with_float, fx_measure
    graph, float_graph = compile_with_float(spec, settings, loaded)   # float_graph: before quantize, or None
    if not graph.inputs or not graph.outputs:
        raise BadInput(f"{spec}: the model has no {'inputs' if not graph.inputs else 'outputs'}: nothing to verify")
    data = load_data(data_path, source_graph, loaded.input_names) if data_path else \
        random_data(source_graph, samples, settings.seed)
    _labels_given(thresholds, data_path, data)
    layers = layer_pairs(graph, loaded.onnx_model if loaded.onnx_model is not None else source_graph)
    src_names = [o.name for o in loaded.onnx_model.graph.output] if loaded.onnx_model is not None else \
        [v.name for v in source_graph.outputs]
    outputs = [(v.name, src_names[i]) for i, v in enumerate(graph.outputs)]
    result = {"target": settings.target, "model": spec, "data": data.source}
    result |= _measure(loaded, source_graph, graph, data, layers, outputs, settings)
    if float_graph is not None:
        result |= fx_measure(float_graph, graph, data)
    if "c" in settings.emit:   # the emitted C, compiled with the host gcc, against the emulator
        from mpc.driver.verify_fx import c_measure
        result |= c_measure(graph, data)
    if "verilog" in settings.emit:   # the emitted RTL, simulated with iverilog, against the emulator
        from mpc.driver.verify_rtl import rtl_measure
        result |= rtl_measure(graph, data, settings.parallel)
        if settings.synth:   # --synth: Yosys on the same RTL
            from mpc.driver.verify_rtl import rtl_synth
            result["verilog_synth"] = rtl_synth(graph, settings)
    if any(op.kind.startswith("snn.") for op in graph.ops):   # spiking targets: rates, Pearson, cost
        from mpc.snn.report import spiking_report
        result["spiking"] = spiking_report(graph, source_graph, data)
    result["checks"] = run_checks(result, thresholds)
    from mpc.driver.verify_rtl import rtl_checks
    result["checks"] += rtl_checks(result)
    return result


def verify_converted(path: str, source: str, settings: Settings, data_path: str | None, samples: int = 256,
                     thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """Compare a converted folder (or its model.mpc), taken as it is, with its source model.

    Inputs and outputs are matched by name (the converted graph keeps the source's names). Layers
    are not compared: the text form does not keep the source's node names."""
    _labels_given(thresholds, data_path)
    p = Path(path)
    mpc_file = p / "model.mpc" if p.is_dir() else p
    if p.is_dir() and not mpc_file.is_file() or not p.is_dir() and p.suffix != ".mpc":
        raise BadInput(f"{path}: not a converted output folder or .mpc file (no model.mpc)")
    graph = load_mpc(str(mpc_file)).graph
    loaded = load(source, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch,
                  outputs=settings.outputs)
    names = {v.name for v in loaded.graph.inputs}
    for v in graph.inputs:
        if v.name not in names:
            raise BadInput(f"{path}: input '{v.name}' is not an input of {source} "
                           f"(its inputs: {', '.join(sorted(names))})")
    to_source = {ir: ox for ox, ir in loaded.output_names.items()}
    for v in graph.outputs:
        if v.name not in to_source:
            raise BadInput(f"{path}: output '{v.name}' is not an output of {source} "
                           f"(its outputs: {', '.join(sorted(to_source))})")
    data = load_data(data_path, graph, loaded.input_names) if data_path else random_data(graph, samples, settings.seed)
    _labels_given(thresholds, data_path, data)
    check_feeds(loaded.graph, data.feeds)   # the source must take the same data
    outputs = [(v.name, to_source[v.name]) for v in graph.outputs]
    result = {"target": None, "model": str(path), "source": source, "data": data.source}
    result |= _measure(loaded, loaded.graph, graph, data, [], outputs, settings)
    result["layers_note"] = "layers not compared: model.mpc does not keep the source's node names"
    result["checks"] = run_checks(result, thresholds)
    return result


def _labels_given(thresholds: Thresholds, data_path: str | None, data: Dataset | None = None) -> None:
    if thresholds.max_accuracy_drop is None:
        return
    if not data_path:
        raise BadFlag("--max-accuracy-drop needs labels: give --data with a 'labels' array")
    if data is not None and data.labels is None:
        raise BadFlag(f"--max-accuracy-drop needs labels: {data_path} has no 'labels' array")


def _measure(loaded: Loaded, source_graph: Graph, graph: Graph, data: Dataset, layers: list,
             outputs: list[tuple[str, str]], settings: Settings) -> dict[str, Any]:
    """Run the source and the converted graph on `data` in slices of 256 samples and compare them;
    `outputs` pairs converted output names with the source's."""
    stats = {name: Pearson() for name, _, _ in layers}
    per_neuron = {name: NeuronPearson() for name, _, _ in layers}
    src_out, cv_out = {}, {}
    # slice into 256 samples only along a symbolic batch dim: a static shape takes its data whole
    step = 256 if any(v.type.rank and isinstance(v.type.shape[0], str) for v in graph.inputs) else max(1, data.size)
    total = (data.size + step - 1) // step
    for feeds, _ in progress_bar(_slices(data, graph, step), total=total, desc="verify", quiet=settings.quiet,
                                 progress=settings.progress):
        batch = Dataset(feeds, None, data.source)
        ref = run_source(loaded.onnx_model, source_graph, batch, [t for _, t, _ in layers], loaded.input_names,
                         loaded.source)
        got = run(graph, feeds, keep_all=bool(layers))
        for name, tensor, value in layers:
            if tensor in ref and value.name in got:
                stats[name].add(ref[tensor], got[value.name])
                per_neuron[name].add(ref[tensor], got[value.name])
        for name, src_name in outputs:
            src_out.setdefault(name, []).append(ref[src_name])
            cv_out.setdefault(name, []).append(got[name])
    src = {k: _join(v) for k, v in src_out.items()}
    cv = {k: _join(v) for k, v in cv_out.items()}
    layer_rows = [{"name": name, "pearson": stats[name].value(), "neuron_pearson": per_neuron[name].summary()}
                  for name, _, _ in layers]
    cmp = compare(src, cv, data.labels, layer_rows)
    rel = max(float((np.abs(cv[k].astype(np.float64) - src[k]) / np.maximum(1.0, np.abs(src[k]))).max(initial=0.0))
              for k in src) if src else 0.0
    return {"samples": data.size, "max_abs_err": cmp.max_abs_err, "mean_abs_err": cmp.mean_abs_err,
            "max_rel_err": rel, "top1_agreement": cmp.top1_agreement, "source_accuracy": cmp.source_accuracy,
            "converted_accuracy": cmp.converted_accuracy, "layers": cmp.layers,
            "top1_degenerate": cmp.top1_degenerate, "top1_note": cmp.top1_note,
            NEURONS: {name: per_neuron[name].values() for name, _, _ in layers}}


NEURONS = "_neuron_values"   # per-neuron correlations per layer, for --plots; popped before printing


def save_plots(result: dict[str, Any], folder: str, force: bool) -> list[str]:
    """Write the layer and neuron correlation figures of a verify result into `folder` (atomically)."""
    from mpc.driver.outdir import staged_dir
    with staged_dir(Path(folder), force) as tmp:
        return write_plots(result["layers"], result.get(NEURONS, {}), tmp, Path(result["model"]).name)


def _slices(data: Dataset, graph: Graph, step: int):
    """batches(data, step), but an input without a symbolic leading (batch) dim is passed whole in every
    slice: a [5] bias next to a [3, 4, 5] input is not a batch of 5 samples."""
    whole = {v.name for v in graph.inputs if not (v.type.rank and isinstance(v.type.shape[0], str))}
    if len(whole) == len(graph.inputs):
        yield data.feeds, data.labels
        return
    for feeds, labels in batches(data, step):
        yield {k: data.feeds[k] if k in whole else a for k, a in feeds.items()}, labels


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """The slices of one output joined along the batch axis; 0-d outputs (one per slice) stacked."""
    if len(parts) == 1:
        return np.asarray(parts[0])
    return np.concatenate(parts) if np.ndim(parts[0]) else np.stack(parts)


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
    what = f"against {r['source']}" if r.get("source") else f"--target {r['target']}"
    count = f"{r['samples']} sample{'s' if r['samples'] != 1 else ''}"
    print(f"mpc verify: {r['model']} {what} on {count} ({r['data']})")
    print(f"  max abs err      {r['max_abs_err']:.3g}")
    print(f"  max rel err      {r['max_rel_err']:.3g}   (|err| / max(1, |source|))")
    print(f"  mean abs err     {r['mean_abs_err']:.3g}")
    note = f"   ({r['top1_note']})" if r.get("top1_note") else ""
    print(f"  top-1 agreement  {_pct(r['top1_agreement'])}{note}")
    print(f"  accuracy         source {_pct(r['source_accuracy'])}   converted {_pct(r['converted_accuracy'])}")
    from mpc.driver.verify_fx import print_fx
    print_fx(r)
    from mpc.driver.verify_rtl import print_rtl
    print_rtl(r)
    if r.get("layers_note"):
        print(f"\n  {r['layers_note']}")
    if r["layers"]:
        width = max(len(row["name"]) for row in r["layers"]) + 2
        print(f"\n  {'layer':<{width}} pearson")
        for row in r["layers"]:
            p = "-" if row["pearson"] is None else f"{row['pearson']:.6f}"
            print(f"  {row['name']:<{width}} {p}")
    if r.get("spiking"):
        from mpc.snn.report import print_spiking
        print_spiking(r["spiking"])
