"""Tests for the pass manager: pipeline strings, aliases, options, `--passes` edits, stats, and the
verifier naming the pass that broke the IR."""
from __future__ import annotations

import dataclasses
import importlib
import pathlib

import numpy as np
import pytest

from mpc.errors import BadFlag, VerifyError
from mpc.ir import TensorType, parse, print_graph
from mpc.passmanager import (
    PassContext,
    Stage,
    edit_pipeline,
    fresh_pass_registry,
    parse_pipeline,
    register_alias,
    register_pass,
    registered,
    run_pipeline,
)

CANONICALIZE = ["remove-identity", "fold-constants", "fold-batchnorm", "gemm-to-matmul", "fold-constants", "dce"]


@dataclasses.dataclass(frozen=True)
class ScaleOptions:
    """Options of the test-only pass `test-options`."""

    factor: float = 1.0
    label: str = "x"
    strict: bool = False


def break_ir(graph, ctx):
    """Test-only pass: give the first op a wrong result type."""
    r = graph.ops[0].results[0]
    r.type = TensorType(r.type.dtype, r.type.shape + (7,))
    return {"broken": 1}


def record_options(graph, ctx, options):
    """Test-only pass: record its options."""
    ctx.report.section("options", options)
    return {"factor": options.factor}


@pytest.fixture(autouse=True)
def test_passes():
    """The test-only passes, registered in a scratch registry that each test drops on exit."""
    with fresh_pass_registry():
        register_pass("test-break-ir", summary="test only: give the first op a wrong result type")(break_ir)
        register_pass("test-options", summary="test only: record its options", options=ScaleOptions)(record_options)
        yield


def test_scratch_registry_drops_what_was_registered_inside():
    """The fixture above registered two passes; outside a scratch block they are gone again."""
    names = {name for name, _, _ in registered()}
    assert {"test-break-ir", "test-options"} <= names
    with fresh_pass_registry():
        register_pass("test-scratch", summary="test only")(break_ir)
        register_alias("test-scratch-alias", "dce", summary="test only")
        assert {"test-scratch", "test-scratch-alias"} <= {name for name, _, _ in registered()}
    assert {name for name, _, _ in registered()} == names


MLP = """graph @g(%x: f32[N,4]) -> (%y: f32[N,3]) {
  weight @w : f32[3,4]
  weight @b : f32[3]
  weight @unused : f32[3]
  %0 = nn.dropout(%x) : f32[N,4]
  %y = nn.gemm(%0, @w, @b) {trans_b = true} : f32[N,3]
}
"""


def _mlp():
    return parse(MLP, lambda name, t: np.ones(t.shape, t.dtype.numpy))


def test_parse_pipeline_names_and_whitespace():
    assert parse_pipeline(" dce , remove-identity ") == [Stage("dce"), Stage("remove-identity")]
    assert parse_pipeline("") == []


def test_alias_expands_to_its_pipeline():
    assert [s.name for s in parse_pipeline("canonicalize")] == CANONICALIZE
    assert [s.name for s in parse_pipeline("dce,canonicalize")] == ["dce"] + CANONICALIZE
    row = next(r for r in registered() if r[0] == "canonicalize")
    assert row[1] == "alias" and ",".join(CANONICALIZE) in row[2]


def test_unknown_pass_is_a_bad_flag_listing_known_ones():
    with pytest.raises(BadFlag, match=r"unknown pass 'fold-batchnorms' \(expected one of: .*fold-batchnorm"):
        parse_pipeline("dce,fold-batchnorms")


@pytest.mark.parametrize("pipeline, message", [
    ("dce{x=1}", "pass 'dce' takes no options"),
    ("dce{", "bad pipeline entry"),
    ("Dce", "bad pipeline entry"),
    ("test-options{nope=1}", "has no option 'nope' (expected one of: factor, label, strict)"),
    ("test-options{factor=abc}", "test-options.factor: expected a float"),
    ("test-options{strict=1}", "test-options.strict: expected a bool"),
])
def test_bad_pipeline_entries(pipeline, message):
    with pytest.raises(BadFlag, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_pipeline(pipeline)


def test_options_syntax():
    [stage] = parse_pipeline("test-options{factor=2.5, strict=true,label=abc}")
    assert stage.options == ScaleOptions(2.5, "abc", True)
    assert str(stage) == "test-options{factor=2.5,label=abc,strict=true}"
    assert parse_pipeline("test-options")[0].options == ScaleOptions()
    ctx = PassContext()
    records = run_pipeline(_mlp(), "test-options{factor=3}", ctx)
    assert ctx.report.sections["options"].factor == 3.0 and records[0].stats == {"factor": 3.0}


@pytest.mark.parametrize("edit, result", [
    (None, "canonicalize"),
    ("", "canonicalize"),
    ("dce,remove-identity", "dce,remove-identity"),
    ("+test-options", "canonicalize,test-options"),
    ("-fold-constants", "remove-identity,fold-batchnorm,gemm-to-matmul,dce"),
    ("-gemm-to-matmul,+dce", "remove-identity,fold-constants,fold-batchnorm,fold-constants,dce,dce"),
])
def test_edit_pipeline(edit, result):
    assert edit_pipeline("canonicalize", edit) == result


@pytest.mark.parametrize("edit, message", [
    ("+dce,remove-identity", "mix of"),
    ("-quantize", "'quantize' is not in the pipeline"),
])
def test_edit_pipeline_errors(edit, message):
    with pytest.raises(BadFlag, match=message):
        edit_pipeline("canonicalize", edit)


def test_verifier_failure_names_the_pass():
    g = _mlp()
    with pytest.raises(VerifyError, match="IR invalid after pass 'test-break-ir': <text>:6:3: 'nn.gemm' result "
                                          r"type f32\[N,3,7\] does not match") as info:
        run_pipeline(g, "remove-identity,test-break-ir,dce")
    assert info.value.pass_name == "test-break-ir"


def test_records_stats_and_dce_empties_the_weight_table():
    g = _mlp()
    records = run_pipeline(g, "canonicalize")
    assert [r.name for r in records] == CANONICALIZE
    assert [r.stats for r in records] == [
        {"removed": 1, "to_identity": 0}, {"folded": 0, "simplified": 0}, {"folded": 0, "kept": 0},
        {"lowered": 1}, {"folded": 0, "simplified": 0}, {"ops": 0, "weights": 2}]
    assert sorted(g.weights) == ["b", "w.T"] and all(r.seconds >= 0 for r in records)


def test_dump_after_selected_passes():
    dumps = []
    run_pipeline(_mlp(), "remove-identity,dce", dump=lambda i, name, g: dumps.append((i, name, print_graph(g))),
                 dump_after={"dce"})
    assert [(i, name) for i, name, _ in dumps] == [(0, "input"), (2, "dce")]
    assert "nn.dropout" in dumps[0][2] and "nn.dropout" not in dumps[1][2]


def test_every_pass_module_is_documented_and_registered_once():
    import mpc.passes
    rows = {name: (kind, summary) for name, kind, summary in registered()}
    for name in ["dce", "fold-batchnorm", "fold-constants", "gemm-to-matmul", "remove-identity"]:
        kind, summary = rows[name]
        module = importlib.import_module(f"mpc.passes.{name.replace('-', '_')}")
        assert kind == "pass" and summary and "\n" not in summary
        assert module.__doc__ and module.__doc__.startswith(f"`{name}`")
    listed = sorted(p.stem for p in pathlib.Path(mpc.passes.__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    imported = sorted(m for m in vars(mpc.passes) if m in listed)
    assert imported == listed, "passes/__init__.py must import every pass module by its explicit list"
