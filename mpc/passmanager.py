"""The pass manager: a registry of named passes, pipeline strings, verify-after-each-pass,
`--dump-ir-after`, and per-pass wall time and statistics for the report.

A pass is a function `fn(graph, ctx) -> dict | None` (the dict holds its statistics) registered
with `@register_pass(name, summary=...)`; a pass with options (a frozen dataclass, validated when
it is built) is `fn(graph, ctx, options)`. Pipelines are comma-separated strings, options in braces
(`mp-calibrate{gamma=8.0,gain_terms=3}`); an alias such as `canonicalize` expands to a fixed list.
The pipeline string is the only source of what runs: a stage prints back as it parses.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import re
import time
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpc.errors import BadFlag, MPCError, VerifyError
from mpc.ir import Graph, verify_graph
from mpc.ir.opdefs import InferError, coerce

if TYPE_CHECKING:   # types only: the pass manager loads neither data files nor models
    from mpc.data import Dataset
    from mpc.frontend import Loaded


@dataclass(frozen=True)
class PassInfo:
    """A registered pass: name, one-line summary, function and (optional) options dataclass."""

    name: str
    summary: str
    fn: Callable[..., Any]
    options: type | None = None
    needs_data: bool = False   # reads ctx.dataset: the driver loads calibration data for it


_PASSES: dict[str, PassInfo] = {}
_ALIASES: dict[str, tuple[str, str]] = {}


def register_pass(name: str, summary: str, options: type | None = None, needs_data: bool = False):
    """Decorator registering a pass under `name` (with its options dataclass, if it takes options)."""
    def deco(fn):
        if name in _PASSES or name in _ALIASES:
            raise RuntimeError(f"pass '{name}' registered twice")
        _PASSES[name] = PassInfo(name, summary, fn, options, needs_data)
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


def option_defaults(name: str) -> str | None:
    """A pass's options with their defaults, as pipeline text (`gamma=none,gain_terms=2,...`); None if it has none."""
    _load()
    info = _PASSES.get(name)
    if info is None or info.options is None:
        return None
    default = info.options()
    return ",".join(f"{f.name}={_format(getattr(default, f.name))}" for f in dataclasses.fields(default))


def _load() -> None:
    import mpc.passes  # noqa: F401  (explicit import list registers every pass)


@dataclass
class PassReport:
    """Where passes put what the conversion report shows: named sections and free-text notes."""

    sections: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def section(self, name: str, content: Any) -> None:
        """Set report section `name`: a table (list of row dicts) or a single value."""
        self.sections[name] = content

    def note(self, text: str) -> None:
        """Add a one-line note to the report."""
        self.notes.append(text)


@dataclass
class PassContext:
    """What passes may read besides the graph and their options: the calibration data (None: a pass
    that needs data samples its own), a seed, how to show progress, the report, the source model."""

    dataset: Dataset | None = None
    seed: int = 0
    quiet: bool = True
    progress: bool = False   # progress bars even when stderr is not a terminal
    report: PassReport = field(default_factory=PassReport)
    source: Loaded | None = None


def _format(v: Any) -> str:
    """An option value as pipeline text (what `_options` parses back)."""
    if isinstance(v, enum.Enum):
        v = v.value
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return repr(v) if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Stage:
    """One pipeline entry: a pass and its options (printed with the non-default ones only)."""

    name: str
    options: Any = None

    def __str__(self) -> str:
        if self.options is None:
            return self.name
        default = type(self.options)()
        fields = [f"{f.name}={_format(getattr(self.options, f.name))}" for f in dataclasses.fields(self.options)
                  if getattr(self.options, f.name) != getattr(default, f.name)]
        return f"{self.name}{{{','.join(fields)}}}" if fields else self.name


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


def _value(tp, text: str, where: str):
    """Option text as a value of type `tp` (`X | None` takes `none`); InferError otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
        if text.strip() == "none":
            return None
        [tp] = [a for a in typing.get_args(tp) if a is not type(None)]
    if tp is str or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return coerce(tp, text.strip(), where)   # no number conversion: `gain=float` is a name
    return coerce(tp, _literal(text), where)


def _pairs(info: PassInfo, body: str) -> dict[str, str]:
    """`k=v,...` as {k: v text}; BadFlag on a key the options dataclass does not have."""
    if info.options is None:
        raise BadFlag(f"pass '{info.name}' takes no options")
    names = [f.name for f in dataclasses.fields(info.options)]
    pairs = {}
    for kv in filter(None, (s.strip() for s in body.split(","))):
        k, _, v = (x.strip() for x in kv.partition("="))
        if k not in names:
            raise BadFlag(f"pass '{info.name}' has no option '{k}' (expected one of: {', '.join(names)})")
        pairs[k] = v
    return pairs


def _options(info: PassInfo, body: str | None):
    """The options dataclass built from `k=v,...` (defaults for the rest); its own checks run here."""
    if body is None:
        return info.options() if info.options else None
    if info.options is None:
        raise BadFlag(f"pass '{info.name}' takes no options")
    hints = typing.get_type_hints(info.options)
    try:
        values = {k: _value(hints[k], v, f"{info.name}.{k}") for k, v in _pairs(info, body).items()}
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


def set_options(pipeline: str, options: dict[str, dict[str, Any]]) -> str:
    """The pipeline with `options` ({pass: {option: value}}) set on every stage of those passes, each
    printed canonically (aliases are expanded only when a pass sits inside one); BadFlag when a
    value is invalid or a pass is not in the pipeline."""
    if not options:
        return pipeline
    _load()
    items = _split(pipeline)
    if not set(options) <= {_ITEM.match(i).group(1) for i in items if _ITEM.match(i)}:
        items = [str(s) for s in parse_pipeline(pipeline)]
    out = []
    for item in items:
        m = _ITEM.match(item)
        name = m.group(1) if m else None
        if name in options and name in _PASSES:
            merged = _pairs(_PASSES[name], m.group(2) or "") | {k: _format(v) for k, v in options[name].items()}
            item = str(Stage(name, _options(_PASSES[name], ",".join(f"{k}={v}" for k, v in merged.items()))))
        out.append(item)
    missing = sorted(set(options) - {i.split("{")[0] for i in out})
    if missing:
        raise BadFlag(f"pass '{missing[0]}' is not in the pipeline '{pipeline}'")
    return ",".join(out)


def pass_options(pipeline: str, name: str):
    """The options of the last `name` stage of the pipeline (its defaults when it has none)."""
    stages = [s for s in parse_pipeline(pipeline) if s.name == name]
    return stages[-1].options if stages else _PASSES[name].options()


def needs_data(pipeline: str) -> bool:
    """Whether some pass of the pipeline reads calibration data (ctx.dataset)."""
    return any(_PASSES[s.name].needs_data for s in parse_pipeline(pipeline))


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


@contextlib.contextmanager
def fresh_pass_registry() -> Iterator[None]:
    """Inside the block, passes and aliases may be registered; they are dropped on exit (for tests)."""
    _load()   # the real passes first, so none of them is first imported (and then dropped) inside
    saved = dict(_PASSES), dict(_ALIASES)
    try:
        yield
    finally:
        for table, old in zip((_PASSES, _ALIASES), saved):
            table.clear()
            table.update(old)
