"""The backend protocol: a backend is a lowering pipeline plus a table of per-op render functions.

`emit` lowers a clone of the converted graph with the backend's pipeline (an ordinary pipeline
string of registered passes, run by the pass manager, which verifies the IR after each pass), then
the backend's `write` renders the lowered graph into the output folder and returns an `Emitted`:
the files it wrote and the sections it adds to the conversion report. Rendering only spells out
what the lowered IR says; fusions, kernel choice and layout are decided by lowering passes, so they
are snippet-tested and show up in `--dump-ir-after` dumps. Lowering stages are dumped as
`ir/<backend>/NN-<pass>.mpc`, numbered from 01 within the backend's lowering (its input is the
converted graph, model.mpc), beside an `ir/<backend>/weights.npz` so that `mpc inspect` reads each.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpc.data import npz_bytes
from mpc.errors import UnsupportedOp
from mpc.ir import Graph, Op, clone, print_graph
from mpc.passmanager import PassContext, PassRecord, run_pipeline

Render = Callable[[Op, list[str]], str]


@dataclass(frozen=True)
class Emitted:
    """What a backend wrote: file paths (relative to the folder), report sections, lowering records."""

    files: tuple[str, ...]
    report_sections: Mapping[str, Any] = field(default_factory=dict)
    lowering: tuple[PassRecord, ...] = ()


@dataclass(frozen=True)
class Backend:
    """A backend: its name, its lowering pipeline, its per-op render table and the writer using it."""

    name: str
    lowering: str
    render: Mapping[str, Render]
    write: Callable[[Graph, Path, str], Emitted]


def check_renderable(graph: Graph, render: Mapping[str, Render], backend: str) -> None:
    """UnsupportedOp naming the first op kind that `render` has no function for."""
    for op in graph.ops:
        if op.kind not in render:
            raise UnsupportedOp(op.kind, op.loc, f"the {backend} backend has no rendering for this op kind")


def lower(backend: Backend, graph: Graph, ctx: PassContext | None = None,
          dump: Callable[[int, str, Graph], None] | None = None,
          dump_after: set[str] | None = None) -> tuple[Graph, list[PassRecord]]:
    """A lowered clone of `graph` (the graph itself is left alone) and the lowering's pass records."""
    lowered = clone(graph)
    return lowered, run_pipeline(lowered, backend.lowering, ctx, dump, dump_after)


def emit(backend: Backend, graph: Graph, folder: Path, target: str = "float", ctx: PassContext | None = None,
         dump_after: tuple[str, ...] = ()) -> Emitted:
    """Lower `graph` for `backend`, dump the stages named in dump_after, and render into `folder`."""
    dumps: dict[str, str] = {}
    weights: dict[str, Any] = {}

    def dump(i: int, name: str, g: Graph) -> None:
        if i == 0:   # the lowering's input is the converted graph itself (model.mpc)
            return
        dumps[f"{i:02d}-{name}.mpc"] = print_graph(g)
        for w in g.used_weights():
            weights.setdefault(w, g.weights[w])

    lowered, records = lower(backend, graph, ctx, dump, set(dump_after) or None)
    check_renderable(lowered, backend.render, backend.name)
    emitted = backend.write(lowered, Path(folder), target)
    files = list(emitted.files)
    if dumps:
        sub = Path(folder) / "ir" / backend.name
        sub.mkdir(parents=True)
        for fname, text in dumps.items():
            (sub / fname).write_text(text)
        (sub / "weights.npz").write_bytes(npz_bytes(dict(sorted(weights.items()))))
        files += [f"ir/{backend.name}/{f}" for f in sorted(dumps)] + [f"ir/{backend.name}/weights.npz"]
    return dataclasses.replace(emitted, files=tuple(files), lowering=tuple(records))
