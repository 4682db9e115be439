"""Sharded datasets: `--data DIR` and `--calib DIR` name a folder of .npz shards (read in file-name order).

`mpc verify --data DIR` compares source and converted model shard by shard, each shard a task on the
sweep executor (`--executor`, `--jobs`): a worker converts the model from its path and flags (once per
worker process), reads only its shard and returns mergeable summaries, never the activations:
- output errors as maxima, sums and counts (max and mean absolute error, max relative error);
- top-1 agreement and accuracy as counts of samples;
- Pearson correlations (per layer and per neuron) as count, means and centred second moments, merged
  with the pairwise update of Chan, Golub and LeVeque, so the merged correlation equals the one over all
  samples up to rounding.
`--calib DIR` gives lower-lif and quantize the shards one at a time (`mpc.calib.ShardedDataset`): their
statistics are computed per shard and merged; mp-calibrate fits on every sample at once and still gets the
shards joined. `RangeStats` is the mergeable summary of activation ranges (min, max, exact percentiles
from merged sorted samples) for statistics that can be computed per shard.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from mpc.calib import RangeStats  # noqa: F401  (re-exported: the summary lives with the capture service)
from mpc.data import Dataset, Pearson, load_data
from mpc.driver.compiler import Settings
from mpc.driver.executor import LOCAL, ExecutorSpec, Point, run_points
from mpc.driver.shard_files import shard_paths
from mpc.errors import BadFlag, BadInput
from mpc.mp.fidelity import NeuronPearson

SHARD_TASK = "mpc.driver.shards:verify_shard"


def merge_moments(a, b):
    """Pearson or NeuronPearson moments of two disjoint sample sets merged into a new object (Chan et al.)."""
    if not b.n:
        return a
    if not a.n:
        return b
    out = type(a)()
    n, k = a.n, b.n
    total = n + k
    ea, eb = b.mean_a - a.mean_a, b.mean_b - a.mean_b
    out.m_aa = a.m_aa + b.m_aa + ea * ea * n * k / total
    out.m_bb = a.m_bb + b.m_bb + eb * eb * n * k / total
    out.m_ab = a.m_ab + b.m_ab + ea * eb * n * k / total
    out.mean_a = a.mean_a + ea * k / total
    out.mean_b = a.mean_b + eb * k / total
    out.n = total
    return out


def _settings(d: dict) -> Settings:
    return Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@functools.lru_cache(maxsize=1)
def _converted(spec: str, settings: Settings) -> tuple:
    """(loaded, source graph, converted graph, layer pairs, output pairs): converted once per worker."""
    from mpc.driver.oracle import layer_pairs
    from mpc.driver.verify_fx import compile_with_float
    from mpc.frontend import load
    from mpc.ir import clone
    loaded = load(spec, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch,
                  outputs=settings.outputs)
    source_graph = clone(loaded.graph)
    graph, float_graph = compile_with_float(spec, settings, loaded)
    if float_graph is not None or "c" in settings.emit or any(op.kind.startswith("snn.") for op in graph.ops):
        raise BadFlag("sharded --data supports the output, accuracy and layer comparison only: not --quantize, "
                      "--emit c or spiking targets (give one .npz)")
    layers = layer_pairs(graph, loaded.onnx_model if loaded.onnx_model is not None else source_graph)
    src_names = [o.name for o in loaded.onnx_model.graph.output] if loaded.onnx_model is not None else \
        [v.name for v in source_graph.outputs]
    outputs = [(v.name, src_names[i]) for i, v in enumerate(graph.outputs)]
    return loaded, source_graph, graph, layers, outputs


def verify_shard(payload: dict) -> dict[str, Any]:
    """The task of one shard: mergeable summaries of source vs converted on that shard alone."""
    from mpc.driver.oracle import run_source
    from mpc.driver.verify import _slices
    from mpc.ir import run
    loaded, source_graph, graph, layers, outputs = _converted(payload["spec"], _settings(payload["settings"]))
    data = load_data(payload["shard"], source_graph, loaded.input_names)
    pearson = {name: (Pearson(), NeuronPearson()) for name, _, _ in layers}
    summary = {"n": data.size, "outputs": {}, "agree": 0, "src_correct": 0, "cv_correct": 0, "classes": set(),
               "top1": False, "labelled": data.labels is not None}
    symbolic = any(v.type.rank and isinstance(v.type.shape[0], str) for v in graph.inputs)
    for feeds, labels in _slices(data, graph, 256 if symbolic else max(1, data.size)):
        ref = run_source(loaded.onnx_model, source_graph, Dataset(feeds, None, data.source),
                         [t for _, t, _ in layers], loaded.input_names, loaded.source)
        got = run(graph, feeds, keep_all=bool(layers))
        for name, tensor, value in layers:
            if tensor in ref and value.name in got:
                pearson[name][0].add(ref[tensor], got[value.name])
                pearson[name][1].add(ref[tensor], got[value.name])
        _add_outputs(summary, [(ref[s], got[c]) for c, s in outputs], labels)
    summary["layers"] = pearson
    return summary


def _add_outputs(summary: dict, pairs: list[tuple[np.ndarray, np.ndarray]], labels) -> None:
    """Fold one slice's outputs (source, converted) into the shard summary: error maxima, sums, counts."""
    for i, (src, cv) in enumerate(pairs):
        src64, err = np.asarray(src, np.float64), np.abs(np.asarray(cv, np.float64) - np.asarray(src, np.float64))
        acc = summary["outputs"].setdefault(i, {"max": 0.0, "sum": 0.0, "count": 0, "max_rel": 0.0})
        acc["max"] = max(acc["max"], float(err.max(initial=0.0)))
        acc["sum"] += float(err.sum())
        acc["count"] += int(err.size)
        acc["max_rel"] = max(acc["max_rel"], float((err / np.maximum(1.0, np.abs(src64))).max(initial=0.0)))
    src, cv = (np.asarray(a) for a in pairs[0])
    if src.ndim < 2 or not src.size:
        return
    ts, tc = src.reshape(src.shape[0], -1).argmax(1), cv.reshape(cv.shape[0], -1).argmax(1)
    summary["top1"] = True
    summary["agree"] += int((ts == tc).sum())
    summary["classes"] |= {int(c) for c in ts}
    if labels is not None:
        summary["src_correct"] += int((ts == labels).sum())
        summary["cv_correct"] += int((tc == labels).sum())


def verify_sharded(spec: str, settings: Settings, folder: str, thresholds=None,
                   executor: ExecutorSpec = LOCAL) -> dict[str, Any]:
    """`mpc verify --data DIR`: each shard a task on `executor`, summaries merged in shard order; the
    same keys as an unsharded verify (without its --quantize, C and spiking sections)."""
    from mpc.driver.verify import NEURONS, Thresholds, run_checks
    thresholds = thresholds or Thresholds()
    paths = shard_paths(folder)
    base = {"spec": spec, "settings": dataclasses.asdict(dataclasses.replace(settings, quiet=True))}
    outcomes = run_points(SHARD_TASK, [Point(p.name, base | {"shard": str(p)}) for p in paths], executor)
    for o in outcomes:
        if not o.ok:
            raise BadInput(f"{folder}: shard {o.name} failed twice: {o.error}")
    parts = [o.value for o in outcomes]
    if thresholds.max_accuracy_drop is not None and not all(p["labelled"] for p in parts):
        raise BadFlag(f"--max-accuracy-drop needs labels: a shard of {folder} has no 'labels' array")
    layers, neurons = _merged_layers(parts)
    result = {"target": settings.target, "model": spec, "data": f"{folder} ({len(paths)} shards)"}
    result |= _merged_outputs(parts) | {"layers": layers, NEURONS: neurons}
    result["checks"] = run_checks(result, thresholds)
    return result


def _merged_layers(parts: list[dict]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Layer rows (Pearson, per-neuron summary) and per-neuron correlations, merged over shards."""
    rows, neurons = [], {}
    for name in parts[0]["layers"]:
        layer = functools.reduce(merge_moments, [p["layers"][name][0] for p in parts])
        neuron = functools.reduce(merge_moments, [p["layers"][name][1] for p in parts])
        rows.append({"name": name, "pearson": layer.value(), "neuron_pearson": neuron.summary()})
        neurons[name] = neuron.values()
    return rows, neurons


def _merged_outputs(parts: list[dict]) -> dict[str, Any]:
    """Error, agreement and accuracy figures from the shards' counts and sums."""
    from mpc.driver.oracle import _degenerate_note
    n = sum(p["n"] for p in parts)
    outs = [[p["outputs"][i] for p in parts] for i in sorted(parts[0]["outputs"])]
    means = [sum(o["sum"] for o in per) / sum(o["count"] for o in per) for per in outs
             if sum(o["count"] for o in per)]
    top1, labelled = all(p["top1"] for p in parts), all(p["labelled"] for p in parts)
    classes = sorted(set().union(*(p["classes"] for p in parts)))
    note = _degenerate_note(np.full(n, classes[0])) if top1 and len(classes) == 1 else None
    return {"samples": n, "max_abs_err": max((o["max"] for per in outs for o in per), default=0.0),
            "mean_abs_err": float(np.mean(means)) if means else 0.0,
            "max_rel_err": max((o["max_rel"] for per in outs for o in per), default=0.0),
            "top1_agreement": sum(p["agree"] for p in parts) / n if top1 else None,
            "source_accuracy": sum(p["src_correct"] for p in parts) / n if top1 and labelled else None,
            "converted_accuracy": sum(p["cv_correct"] for p in parts) / n if top1 and labelled else None,
            "top1_degenerate": (len(classes) == 1) if top1 else None, "top1_note": note}
