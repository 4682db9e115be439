"""The pass manager: a registry of named passes, pipeline strings, verify-after-each-pass,
`--dump-ir-after`, and per-pass wall time and statistics for the report.

A pass is a function `fn(graph, ctx) -> dict | None` (the dict holds its statistics) registered
with `@register_pass(name, summary=...)`. Pipelines are comma-separated strings; an alias such as
`canonicalize` expands to a fixed list. The pipeline string is the only source of what runs.
"""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from mpc.errors import BadFlag, MPCError, VerifyError
from mpc.ir import Graph, verify_graph
from mpc.ir.opdefs import InferError, coerce


@dataclass(frozen=True)
class PassInfo:
    """A registered pass: name, one-line summary, function and (optional) options dataclass."""

    name: str
    summary: str
    fn: Callable[..., Any]
    options: type | None = None


_PASSES: dict[str, PassInfo] = {}
_ALIASES: dict[str, tuple[str, str]] = {}


def register_pass(name: str, summary: str, options: type | None = None):
    """Decorator registering a pass under `name`."""
    def deco(fn):
        if name in _PASSES or name in _ALIASES:
            raise RuntimeError(f"pass '{name}' registered twice")
        _PASSES[name] = PassInfo(name, summary, fn, options)
        return fn
    return deco


def register_alias(name: str, pipeline: str, summary: str) -> None:
    """Register a pipeline alias (e.g. `canonicalize`)."""
    if name in _PASSES or name in _ALIASES:
        raise RuntimeError(f"pass '{name}' registered twice")
    _ALIASES[name] = (pipeline, summary)


def registered() -> list[tuple[str, str, str]]:
    """(name, 'pass'|'alias', summary) for every pass and alias, sorted by name."""
    _load()
    rows = [(p.name, "pass", p.summary) for p in _PASSES.values()]
    rows += [(n, "alias", f"{s} [{p}]") for n, (p, s) in _ALIASES.items()]
    return sorted(rows)


def _load() -> None:
    import mpc.passes  # noqa: F401  (explicit import list registers every pass)


@dataclass
class PassContext:
    """What passes may read besides the graph: conversion settings and a place for reports."""

    settings: Any = None
    quiet: bool = True
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One pipeline entry: a pass and its options."""

    name: str
    options: Any = None

    def __str__(self) -> str:
        if self.options is None:
            return self.name
        fields = [f"{f.name}={getattr(self.options, f.name)}" for f in dataclasses.fields(self.options)]
        return f"{self.name}{{{','.join(fields)}}}"


_ITEM = re.compile(r"^\s*([a-z][a-z0-9-]*)\s*(?:\{([^{}]*)\})?\s*$")


def _split(pipeline: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in pipeline:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i.strip() for i in items if i.strip()]


def _literal(text: str):
    t = text.strip()
    if t in ("true", "false"):
        return t == "true"
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def _options(info: PassInfo, body: str | None):
    if body is None:
        return info.options() if info.options else None
    if info.options is None:
        raise BadFlag(f"pass '{info.name}' takes no options")
    import typing
    hints = typing.get_type_hints(info.options)
    values = {}
    for kv in filter(None, (s.strip() for s in body.split(","))):
        k, _, v = kv.partition("=")
        if k.strip() not in hints:
            raise BadFlag(f"pass '{info.name}' has no option '{k.strip()}' (expected one of: {', '.join(hints)})")
        try:
            values[k.strip()] = coerce(hints[k.strip()], _literal(v), f"{info.name}.{k.strip()}")
        except InferError as e:
            raise BadFlag(str(e)) from None
    return info.options(**values)


def parse_pipeline(pipeline: str) -> list[Stage]:
    """Expand aliases and check names; BadFlag on an unknown pass or bad option."""
    _load()
    stages = []
    for item in _split(pipeline):
        m = _ITEM.match(item)
        if not m:
            raise BadFlag(f"bad pipeline entry '{item}' (expected name or name{{key=value,...}})")
        name, body = m.group(1), m.group(2)
        if name in _ALIASES and body is None:
            stages.extend(parse_pipeline(_ALIASES[name][0]))
        elif name in _PASSES:
            stages.append(Stage(name, _options(_PASSES[name], body)))
        else:
            known = sorted(set(_PASSES) | set(_ALIASES))
            raise BadFlag(f"unknown pass '{name}' (expected one of: {', '.join(known)})")
    return stages


def edit_pipeline(base: str, edit: str | None) -> str:
    """Apply `--passes`: a plain list replaces the pipeline; `+name` appends, `-name` removes."""
    if not edit:
        return base
    items = _split(edit)
    if not all(i[:1] in "+-" for i in items):
        if any(i[:1] in "+-" for i in items):
            raise BadFlag(f"--passes '{edit}': mix of +/-edits and plain pass names")
        return ",".join(items)
    names = _split(base)
    expanded = [str(s) for s in parse_pipeline(",".join(names))] if any(i[0] == "-" for i in items) else names
    for i in items:
        if i[0] == "+":
            expanded.append(i[1:])
        else:
            bare = [s.split("{")[0] for s in expanded]
            if i[1:] not in bare:
                raise BadFlag(f"--passes '{i}': '{i[1:]}' is not in the pipeline ({', '.join(bare)})")
            expanded = [s for s in expanded if s.split("{")[0] != i[1:]]
    return ",".join(expanded)


@dataclass
class PassRecord:
    """What one stage did: name, seconds, statistics."""

    name: str
    seconds: float
    stats: dict[str, Any]


def run_pipeline(graph: Graph, pipeline: str, ctx: PassContext | None = None,
                 dump: Callable[[int, str, Graph], None] | None = None,
                 dump_after: set[str] | None = None) -> list[PassRecord]:
    """Run each stage in place, verifying after each; `dump(i, name, graph)` for stages in dump_after."""
    ctx = ctx or PassContext()
    stages = parse_pipeline(pipeline)
    records = []
    if dump and dump_after is not None:
        dump(0, "input", graph)
    for i, stage in enumerate(stages, 1):
        info = _PASSES[stage.name]
        t0 = time.perf_counter()
        stats = info.fn(graph, ctx, stage.options) if info.options else info.fn(graph, ctx)
        seconds = time.perf_counter() - t0
        try:
            verify_graph(graph)
        except VerifyError as e:
            raise VerifyError(e.loc, e.detail, pass_name=stage.name) from None
        except MPCError:
            raise
        records.append(PassRecord(str(stage), seconds, dict(stats or {})))
        if dump and dump_after is not None and ("all" in dump_after or stage.name in dump_after):
            dump(i, stage.name, graph)
    return records


def check_dump_names(names: set[str]) -> None:
    """BadFlag when --dump-ir-after names a pass that does not exist."""
    _load()
    unknown = sorted(n for n in names if n != "all" and n not in _PASSES)
    if unknown:
        raise BadFlag(f"--dump-ir-after: unknown pass '{unknown[0]}' (expected 'all' or one of: "
                      f"{', '.join(sorted(_PASSES))})")


class ScratchRegistry:
    """`with ScratchRegistry():` passes and aliases registered inside are dropped on exit (for tests)."""

    def __enter__(self) -> None:
        _load()   # the real passes first, so none of them is first imported (and then dropped) inside
        self._saved = dict(_PASSES), dict(_ALIASES)

    def __exit__(self, *exc) -> None:
        for table, saved in zip((_PASSES, _ALIASES), self._saved):
            table.clear()
            table.update(saved)
