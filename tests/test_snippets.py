"""Snippet tests: IR in, pipeline, IR out, compared exactly (STYLE.md principle 9).

Each file `tests/snippets/<pass-name>.mpc-test` holds cases separated by a line `// -----`.
A case is

    // free comment lines saying what the case checks (optional)
    // RUN: <pipeline>            a pipeline string, as for --passes; may be empty (parse only)
    <input IR text>               comments (`// ...`) may appear in it: the grammar ignores them
    // CHECK:
    <expected IR text>            exactly what print_graph prints, up to the end of the case

or, for input that must be rejected, instead of the CHECK block,

    // ERROR: <line>:<col>: <message substring>

A comment line `// EQUIV: dense-mp` before the RUN line makes the numeric check interpret every
MP op of the output as the exact dense product it stands for, (x·c)(w/c)ᵀ·gain + offset, so an
MP rewrite is checked to keep the linear map it approximates.

A comment line `// EQUIV: mp-calibrated` is for pipelines that end in `mp-calibrate`, whose output
approximates its float input instead of equalling it: on inputs whose symbolic dims are bound to
101, 103, ... each output must reach Pearson correlation >= 0.95 with the input graph's and a
relative RMS error <= 0.35. That is the MP approximation's own error on the harness's N(0, 1) data
(not the calibration data: mp-calibrate draws its own seeded U(0, 1) samples when given none);
the same graphs with unit gains and zero offsets (uncalibrated) miss it (errors 0.45 to 0.68).
Calibration refits on every run, so these cases skip the second-run check.

where <line> is the line number in the .mpc-test file itself (the input is parsed with its own
line numbers) and <col> the 1-based column, as the ParseError / VerifyError location gives them.
If the input parses, the pipeline runs and must raise that error instead.

For a CHECK case the harness also
- materializes each declared weight from a seeded RNG keyed by the weight's name: names ending in
  `var` draw from U(0.5, 1.5) (BatchNorm variances), other floats from N(0, 1), ints from [-4, 4];
- runs input and output graphs through the interpreter on seeded random inputs, binding the
  symbolic dims (sorted by name) to 3, 5, 7, ..., and requires every output to agree within
  1e-5 relative to the output's largest magnitude (an independent check of the rewrite's numerics);
- checks the output's text round-trips: print(parse(print(g))) == print(g);
- runs the pipeline once more on the output and requires no change (passes reach their fixed form).
"""
from __future__ import annotations

import dataclasses
import pathlib
import zlib

import numpy as np
import pytest

from mpc.errors import MPCError
from mpc.ir import DType, Graph, TensorType, parse, print_graph, run
from mpc.passmanager import registered, run_pipeline

SNIPPETS = pathlib.Path(__file__).parent / "snippets"
SPLIT, RUN, CHECK, ERROR, EQUIV = "// -----", "// RUN:", "// CHECK:", "// ERROR:", "// EQUIV:"
RTOL = 1e-5


@dataclasses.dataclass(frozen=True)
class Case:
    """One case of a snippet file; `first_line` is the file line of its input's first line."""

    file: str
    run_line: int
    pipeline: str
    input: str
    first_line: int
    expected: str | None = None
    error: tuple[int, int, str] | None = None
    equiv: str = "exact"

    @property
    def id(self) -> str:
        return f"{self.file}:{self.run_line}"

    def input_with_file_lines(self) -> str:
        """The input text preceded by blank lines, so parse errors carry file line numbers."""
        return "\n" * (self.first_line - 1) + self.input


def _error_directive(text: str, where: str) -> tuple[int, int, str]:
    loc, _, message = text.partition(": ")
    line, _, col = loc.partition(":")
    if not (line.isdigit() and col.isdigit() and message):
        raise ValueError(f"{where}: expected '// ERROR: <line>:<col>: <message>', got '{text}'")
    return int(line), int(col), message


def _case(file: str, lines: list[tuple[int, str]]) -> Case | None:
    """Build a case from (file line number, text) pairs; None for a case with no content."""
    if not any(text.strip() for _, text in lines):
        return None
    run_at = [i for i, (_, text) in enumerate(lines) if text.startswith(RUN)]
    where = f"{file}:{lines[0][0]}"
    if len(run_at) != 1:
        raise ValueError(f"{where}: a case needs exactly one '{RUN}' line")
    body = lines[run_at[0] + 1:]
    ends = [i for i, (_, text) in enumerate(body) if text.startswith((CHECK, ERROR))]
    if len(ends) != 1:
        raise ValueError(f"{where}: a case needs exactly one '{CHECK}' or '{ERROR}' line")
    end_no, end_text = body[ends[0]]
    input_lines = body[:ends[0]]
    equiv = [t[len(EQUIV):].strip() for _, t in lines[:run_at[0]] if t.startswith(EQUIV)]
    if equiv and equiv not in (["dense-mp"], ["mp-calibrated"]):
        raise ValueError(f"{where}: unknown '{EQUIV}' mode {equiv} (expected dense-mp or mp-calibrated)")
    case = {"file": file, "run_line": lines[run_at[0]][0], "pipeline": lines[run_at[0]][1][len(RUN):].strip(),
            "equiv": equiv[0] if equiv else "exact",
            "input": "\n".join(t for _, t in input_lines) + "\n",
            "first_line": input_lines[0][0] if input_lines else end_no}
    if end_text.startswith(ERROR):
        if any(t.strip() for _, t in body[ends[0] + 1:]):
            raise ValueError(f"{file}:{end_no}: nothing may follow '{ERROR}' in a case")
        return Case(**case, error=_error_directive(end_text[len(ERROR):].strip(), f"{file}:{end_no}"))
    expected = "\n".join(t for _, t in body[ends[0] + 1:]).strip("\n") + "\n"
    return Case(**case, expected=expected)


def load_cases(path: pathlib.Path) -> list[Case]:
    """Every case of one snippet file."""
    cases, cur = [], []
    for no, text in enumerate(path.read_text().splitlines(), 1):
        if text.strip() == SPLIT:
            cases.append(_case(path.name, cur))
            cur = []
        else:
            cur.append((no, text))
    cases.append(_case(path.name, cur))
    return [c for c in cases if c is not None]


def _rng(*keys: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(keys).encode()))


def _draw(rng: np.random.Generator, name: str, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == DType.bool:
        return rng.random(shape) < 0.5
    if name.endswith(("shift", "sign")) and dtype.int_range is not None:   # MP gains: shifts >= 0, signs -1..1
        return rng.integers(0 if name.endswith("shift") else -1, 3 if name.endswith("shift") else 2,
                            shape).astype(dtype.numpy)
    if dtype.int_range is not None:  # small integers that every i/u/fx width holds
        lo, hi = dtype.int_range
        return rng.integers(max(lo, -4), min(hi, 4) + 1, shape).astype(dtype.numpy)
    if name.endswith("var"):
        return rng.uniform(0.5, 1.5, shape).astype(dtype.numpy)
    return rng.standard_normal(shape).astype(dtype.numpy)


def weight_source(case: Case):
    """Seeded weights, one RNG stream per (file, weight name): the same in every parse."""
    def make(name: str, t: TensorType) -> np.ndarray:
        if not t.is_static:
            raise ValueError(f"weight @{name} must have a static shape, got {t}")
        return _draw(_rng(case.file, name), name, t.dtype, t.shape)
    return make


def random_feeds(graph: Graph, key: str, first: int = 3) -> dict[str, np.ndarray]:
    """Seeded data for every input; symbolic dims (sorted by name) bound to 3, 5, 7, ... (from `first`)."""
    symbols = sorted({d for v in graph.inputs for d in v.type.shape if isinstance(d, str)})
    bind = {s: first + 2 * i for i, s in enumerate(symbols)}
    rng = _rng(key, "inputs")
    return {v.name: _draw(rng, v.name, v.type.dtype, tuple(bind.get(d, d) for d in v.type.shape))
            for v in graph.inputs}


def _dense_dot(k, x, w, gain, offset=None):
    a = k.attrs
    y = np.matmul(x * x.dtype.type(a.c), (w / w.dtype.type(a.c)).T) * gain
    return (y if offset is None else y + offset).astype(x.dtype)


def _dense_conv(k, x, w, gain, offset=None):
    from mpc.kernels_np import conv2d
    a = k.attrs
    y = conv2d(x * x.dtype.type(a.c), w / w.dtype.type(a.c), None, a.strides, a.pads, a.dilations, a.group)
    y = y * gain.reshape(1, -1, 1, 1)
    return (y if offset is None else y + offset.reshape(1, -1, 1, 1)).astype(x.dtype)


DENSE_MP = {"mp.dot": _dense_dot, "mp.conv2d": _dense_conv}


def assert_close_outputs(before: Graph, after: Graph, key: str) -> None:
    """The output graph approximates the input graph (Pearson >= 0.95, relative RMS error <= 0.35)."""
    feeds = random_feeds(before, key, first=101)   # enough rows for a correlation to mean something
    want, got = run(before, feeds), run(after, feeds)
    assert list(got) == list(want), "output names changed"
    for name, ref in want.items():
        ref, out = ref.astype(np.float64).ravel(), got[name].astype(np.float64).ravel()
        assert np.corrcoef(out, ref)[0, 1] >= 0.95, f"output {name}: correlation {np.corrcoef(out, ref)[0, 1]}"
        err = np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref ** 2))
        assert err <= 0.35, f"output {name}: relative RMS error {err}"


def assert_same_outputs(before: Graph, after: Graph, key: str, equiv: str = "exact") -> None:
    """Input and output graphs compute the same outputs (names, dtypes, values within RTOL)."""
    if equiv == "mp-calibrated":
        return assert_close_outputs(before, after, key)
    feeds = random_feeds(before, key)
    want, got = run(before, feeds), run(after, feeds, kernels=DENSE_MP if equiv == "dense-mp" else None)
    assert list(got) == list(want), "output names changed"
    for name, ref in want.items():
        out = got[name]
        assert out.dtype == ref.dtype and out.shape == ref.shape, f"output {name}: {out.dtype}{out.shape}"
        finite = np.abs(ref[np.isfinite(ref)]) if ref.dtype.kind == "f" else np.abs(ref)
        scale = float(finite.max()) if finite.size else 1.0
        np.testing.assert_allclose(out, ref, rtol=RTOL, atol=RTOL * scale, equal_nan=True,
                                   err_msg=f"output {name}")


CASES = [c for path in sorted(SNIPPETS.glob("*.mpc-test")) for c in load_cases(path)]


@pytest.mark.parametrize("case", [c for c in CASES if c.error is None], ids=lambda c: c.id)
def test_rewrite(case: Case):
    before = parse(case.input_with_file_lines(), weight_source(case), filename=case.file)
    graph = parse(case.input_with_file_lines(), dict(before.weights), filename=case.file)
    run_pipeline(graph, case.pipeline)
    text = print_graph(graph)
    assert text == case.expected
    assert print_graph(parse(text, dict(graph.weights))) == text, "printed output does not round-trip"
    assert_same_outputs(before, graph, case.id, case.equiv)
    if case.equiv == "mp-calibrated":
        return
    run_pipeline(graph, case.pipeline)
    assert print_graph(graph) == text, "a second run of the pipeline changed the IR"


@pytest.mark.parametrize("case", [c for c in CASES if c.error is not None], ids=lambda c: c.id)
def test_error(case: Case):
    line, col, message = case.error
    with pytest.raises(MPCError) as info:
        graph = parse(case.input_with_file_lines(), weight_source(case), filename=case.file)
        run_pipeline(graph, case.pipeline)
    loc = info.value.loc
    assert message in str(info.value)
    assert (loc.file, loc.line, loc.col) == (case.file, line, col), str(info.value)


# Passes that are not snippet-tested, and where they are tested instead.
PENDING_SNIPPETS: set[str] = set()


def test_every_pass_has_a_snippet_file():
    passes = [name for name, kind, _ in registered() if kind == "pass"]
    missing = {p for p in passes if not (SNIPPETS / f"{p}.mpc-test").exists()}
    assert missing <= PENDING_SNIPPETS, f"passes without tests/snippets/<name>.mpc-test: {sorted(missing)}"
    assert PENDING_SNIPPETS <= missing, f"drop from PENDING_SNIPPETS: {sorted(PENDING_SNIPPETS - missing)}"


def test_case_format(tmp_path):
    path = tmp_path / "x.mpc-test"
    path.write_text("// what\n// RUN: dce\ngraph @g() -> () {\n}\n// CHECK:\ngraph @g() -> () {\n}\n"
                    "// -----\n// RUN:\ngraph @g() -> () {\n  %0 = nn.nope() : f32[]\n}\n// ERROR: 11:8: unknown\n")
    first, second = load_cases(path)
    assert (first.run_line, first.pipeline, first.first_line) == (2, "dce", 3)
    assert first.expected == "graph @g() -> () {\n}\n"
    assert (second.pipeline, second.error) == ("", (11, 8, "unknown"))
    path.write_text("// RUN: dce\ngraph @g() -> () {\n}\n")
    with pytest.raises(ValueError, match="CHECK"):
        load_cases(path)


def test_rewritten_ops_carry_the_location_of_what_they_replace():
    text = ("graph @g(%x: f32[N,4]) -> (%y: f32[N,3]) {\n"
            "  weight @w : f32[3,4]\n  weight @s : f32[3]\n  weight @b : f32[3]\n  weight @m : f32[3]\n"
            "  weight @var : f32[3]\n"
            "  %0 = nn.gemm(%x, @w) {trans_b = true} : f32[N,3]\n"
            "  %y = nn.batchnorm(%0, @s, @b, @m, @var) : f32[N,3]\n}\n")
    graph = parse(text, weight_source(Case("loc", 0, "", text, 1)), filename="m.mpc")
    run_pipeline(graph, "canonicalize")
    # the BN's output is what the whole chain computes now; the gemm's own output is gone
    assert [(op.kind, str(op.loc)) for op in graph.ops] == [("nn.matmul", "m.mpc:8:3"), ("nn.add", "m.mpc:8:3")]
