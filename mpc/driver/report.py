"""Conversion reports: report.json (machine-readable, sorted keys) and report.md (for people).

Both are deterministic: per-pass wall times go in only with --timings, so converting twice gives
byte-identical folders.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from mpc.ir import Graph


def graph_summary(graph: Graph) -> dict[str, Any]:
    """Op counts by kind, weight count and parameter count."""
    used = graph.used_weights()
    return {
        "ops": dict(sorted(Counter(op.kind for op in graph.ops).items())),
        "weights": len(used),
        "parameters": int(sum(np.asarray(graph.weights[w]).size for w in used)),
        "inputs": {v.name: str(v.type) for v in graph.inputs},
        "outputs": {v.name: str(v.type) for v in graph.outputs},
    }


def _clean(x):
    if isinstance(x, float):
        return x if np.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


def to_json(report: dict[str, Any]) -> str:
    """Stable JSON text of a report."""
    return json.dumps(_clean(report), indent=2, sort_keys=True) + "\n"


def _table(rows: list[list[Any]], header: list[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def to_markdown(report: dict[str, Any]) -> str:
    """A readable report.md."""
    lines = [f"# mpc conversion report: {report['model']}", "",
             f"- source: `{report['source']}`", f"- target: `{report['target']}`",
             f"- pipeline: `{report['pipeline']}`", f"- mpc version: {report['mpc_version']}", ""]
    s = report["summary"]
    lines += ["## Result", "", f"- parameters: {s['parameters']} in {s['weights']} weights",
              f"- inputs: {_fmt(s['inputs'])}", f"- outputs: {_fmt(s['outputs'])}", ""]
    lines += _table([[k, v] for k, v in s["ops"].items()], ["op kind", "count"]) + [""]
    timed = any("seconds" in p for p in report["passes"])
    header = ["#", "pass", "statistics"] + (["seconds"] if timed else [])
    rows = [[i, p["name"], _fmt(p["stats"]) or "-"] + ([f"{p['seconds']:.4f}"] if timed else [])
            for i, p in enumerate(report["passes"], 1)]
    lines += ["## Passes", ""] + _table(rows, header) + [""]
    for name, b in report.get("backends", {}).items():
        rows = [[i, p["name"], _fmt(p["stats"]) or "-"] + ([f"{p['seconds']:.4f}"] if timed else [])
                for i, p in enumerate(b["passes"], 1)]
        lines += [f"## Backend {name}", "", f"- lowering: `{b['lowering']}`", ""] + _table(rows, header) + [""]
    for title, section in report.get("sections", {}).items():
        lines += [f"## {title}", ""]
        if isinstance(section, list) and section and isinstance(section[0], dict):
            keys = list(section[0])
            lines += _table([[_fmt(r.get(k, "")) for k in keys] for r in section], keys)
        elif isinstance(section, list) and section:
            lines += [f"- {_fmt(item)}" for item in section]
        elif isinstance(section, dict) and any(isinstance(v, (dict, list)) for v in section.values()):
            lines += _nested(section, 3)
        else:
            lines.append(_fmt(section))
        lines.append("")
    lines += ["## Files", ""] + [f"- `{f}`" for f in report["files"]] + [""]
    return "\n".join(lines)


def _nested(section: dict, level: int) -> list[str]:
    """A section holding dicts or lists: its plain values as bullets, then each nested dict (a key |
    value table, or deeper headings) and each list (a table of its rows) under a heading of its own."""
    lines = [f"- {k}: {_cell(v)}" for k, v in section.items() if not isinstance(v, (dict, list))]
    for k, v in section.items():
        if not isinstance(v, (dict, list)):
            continue
        lines += ["", f"{'#' * min(level, 6)} {k}", ""]
        if isinstance(v, dict) and any(isinstance(x, (dict, list)) for x in v.values()):
            lines += _nested(v, level + 1)
        elif isinstance(v, dict):
            lines += _table([[a, _cell(b)] for a, b in v.items()], ["key", "value"]) if v else ["-"]
        elif v and all(isinstance(r, dict) for r in v):
            keys = list(v[0])
            lines += _table([[_cell(r.get(c, "")) for c in keys] for r in v], keys)
        else:
            lines += [f"- {_cell(item)}" for item in v] or ["-"]
    return lines[1:] if lines and lines[0] == "" else lines


def _cell(v) -> str:
    # counts averaged over samples are large floats: all their digits, not 4 significant ones
    return f"{v:.10g}" if isinstance(v, float) else _fmt(v)
