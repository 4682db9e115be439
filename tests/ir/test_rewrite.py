"""Unit tests for the graph-edit primitives and the pattern driver (mpc.ir.rewrite), hard cases first:
a value with several users, a value that is a graph output, an input wired straight to an output,
replacement by a weight, erasing an op that is still used."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import VerifyError
from mpc.ir import (
    Rewriter,
    apply_patterns,
    erase,
    insert_before,
    make_op,
    parse,
    print_graph,
    replace_all_uses,
    run,
    verify_graph,
)


def _graph(body: str, sig: str = "(%x: f32[3]) -> (%y: f32[3])", weights=None):
    text = f"graph @g{sig} {{\n" + "".join(f"  {line}\n" for line in body.strip().splitlines()) + "}\n"
    return parse(text, weights if weights is not None else (lambda name, t: np.ones(t.shape, t.dtype.numpy)))


def _op(graph, name: str):
    """The op whose result is named `name`."""
    return next(op for op in graph.ops if op.result.name == name)


def test_replace_value_with_several_users():
    g = _graph("""
        %0 = nn.relu(%x) : f32[3]
        %1 = nn.add(%0, %0) : f32[3]
        %2 = nn.mul(%0, %1) : f32[3]
        %y = nn.sub(%2, %0) : f32[3]""")
    old = _op(g, "0").result
    new = make_op(g, "nn.tanh", [g.inputs[0]])
    insert_before(g, _op(g, "0"), [new])
    replace_all_uses(g, old, new.result)
    assert all(v is not old for op in g.ops for v in op.operands)
    assert _op(g, "1").operands == [new.result, new.result]
    erase(g, _op(g, "0"))
    verify_graph(g)
    assert print_graph(g) == print_graph(_graph("""
        %0 = nn.tanh(%x) : f32[3]
        %1 = nn.add(%0, %0) : f32[3]
        %2 = nn.mul(%0, %1) : f32[3]
        %y = nn.sub(%2, %0) : f32[3]"""))


def test_replace_graph_output_with_op_result_keeps_the_output_name():
    g = _graph("""
        %0 = nn.relu(%x) : f32[3]
        %y = nn.identity(%0) : f32[3]""")
    replace_all_uses(g, g.outputs[0], _op(g, "0").result)
    erase(g, g.ops[1])
    verify_graph(g)
    assert print_graph(g) == "graph @g(%x: f32[3]) -> (%y: f32[3]) {\n  %y = nn.relu(%x) : f32[3]\n}\n"


def test_replace_graph_output_that_also_has_op_users():
    g = _graph("""
        %y = nn.relu(%x) : f32[3]
        %z = nn.tanh(%y) : f32[3]""", "(%x: f32[3]) -> (%y: f32[3], %z: f32[3])")
    new = make_op(g, "nn.sigmoid", [g.inputs[0]])
    insert_before(g, g.ops[0], [new])
    replace_all_uses(g, g.outputs[0], new.result)
    erase(g, g.ops[1])
    verify_graph(g)
    assert print_graph(g).splitlines()[1:3] == ["  %y = nn.sigmoid(%x) : f32[3]", "  %z = nn.tanh(%y) : f32[3]"]


def test_replace_graph_output_with_graph_input_inserts_an_identity():
    g = _graph("%y = nn.dropout(%x) : f32[3]")
    replace_all_uses(g, g.outputs[0], g.inputs[0])
    erase(g, g.ops[0])
    verify_graph(g)
    assert print_graph(g) == "graph @g(%x: f32[3]) -> (%y: f32[3]) {\n  %y = nn.identity(%x) : f32[3]\n}\n"
    assert [v.name for v in g.inputs] == ["x"]


def test_replace_graph_output_with_weight_inserts_an_identity():
    g = _graph("weight @w : f32[3]\n%y = nn.add(@w, @w) : f32[3]", weights={"w": np.arange(3, dtype=np.float32)})
    rw = Rewriter(g, g.ops[0])
    replace_all_uses(g, g.outputs[0], rw.weight("w.add", np.arange(3, dtype=np.float32) * 2))
    erase(g, g.ops[0])
    verify_graph(g)
    assert print_graph(g).splitlines()[-2] == "  %y = nn.identity(@w.add) : f32[3]"
    np.testing.assert_array_equal(run(g, {"x": np.zeros(3, np.float32)})["y"], [0, 2, 4])


def test_replace_graph_output_with_another_output_keeps_both_distinct():
    g = _graph("""
        %a = nn.relu(%x) : f32[3]
        %b = nn.identity(%a) : f32[3]""", "(%x: f32[3]) -> (%a: f32[3], %b: f32[3])")
    replace_all_uses(g, g.outputs[1], g.outputs[0])
    erase(g, g.ops[1])
    verify_graph(g)
    assert [v.name for v in g.outputs] == ["a", "b"] and g.outputs[0] is not g.outputs[1]
    assert g.outputs[1].producer.kind == "nn.identity"


def test_replace_with_itself_changes_nothing():
    g = _graph("%y = nn.relu(%x) : f32[3]")
    before = print_graph(g)
    replace_all_uses(g, g.outputs[0], g.outputs[0])
    assert print_graph(g) == before


def test_input_wired_straight_to_output_survives_edits_elsewhere():
    g = _graph("%y = nn.relu(%x) : f32[3]", "(%x: f32[3]) -> (%x: f32[3], %y: f32[3])")
    new = make_op(g, "nn.tanh", [g.inputs[0]])
    insert_before(g, g.ops[0], [new])
    replace_all_uses(g, g.outputs[1], new.result)
    erase(g, g.ops[1])
    verify_graph(g)
    assert print_graph(g) == ("graph @g(%x: f32[3]) -> (%x: f32[3], %y: f32[3]) {\n"
                              "  %y = nn.tanh(%x) : f32[3]\n}\n")


def test_replacing_an_input_wired_to_an_output_keeps_the_input_name():
    g = _graph("%y = nn.relu(%x) : f32[3]", "(%x: f32[3]) -> (%x: f32[3], %y: f32[3])")
    new = make_op(g, "nn.tanh", [g.inputs[0]])
    insert_before(g, None, [new])
    replace_all_uses(g, g.inputs[0], new.result)
    assert [v.name for v in g.inputs] == ["x"]


def test_erase_of_a_used_op_raises():
    g = _graph("""
        %0 = nn.relu(%x) : f32[3]
        %y = nn.tanh(%0) : f32[3]""")
    with pytest.raises(VerifyError, match="cannot erase 'nn.relu': %0 is still used"):
        erase(g, g.ops[0])
    with pytest.raises(VerifyError, match="cannot erase 'nn.tanh'"):
        erase(g, g.ops[1])  # its result is a graph output
    assert len(g.ops) == 2


def test_erase_of_an_unused_op_and_of_an_op_not_in_the_graph():
    g = _graph("""
        %0 = nn.relu(%x) : f32[3]
        %y = nn.tanh(%x) : f32[3]""")
    dead = g.ops[0]
    erase(g, dead)
    assert [op.kind for op in g.ops] == ["nn.tanh"]
    with pytest.raises(ValueError, match="not in graph"):
        erase(g, dead)


def test_insert_before_anchor_and_at_the_end():
    g = _graph("%y = nn.relu(%x) : f32[3]")
    first, last = make_op(g, "nn.tanh", [g.inputs[0]]), make_op(g, "nn.sigmoid", [g.inputs[0]])
    insert_before(g, g.ops[0], [first])
    insert_before(g, None, [last])
    assert [op.kind for op in g.ops] == ["nn.tanh", "nn.relu", "nn.sigmoid"]


def test_make_op_infers_types_and_rejects_bad_operands():
    g = _graph("%y = nn.relu(%x) : f32[3]", "(%x: f32[3], %z: f32[N,4]) -> (%y: f32[3])")
    op = make_op(g, "nn.add", [g.inputs[1], g.inputs[1]])
    assert str(op.result.type) == "f32[N,4]" and op.result.producer is op
    assert op.result.name not in g.value_names()
    with pytest.raises(VerifyError, match="do not broadcast"):
        Rewriter(g, g.ops[0]).op("nn.add", [g.inputs[0], g.inputs[1]])


def test_make_op_without_location_raises_verify_error():
    g = _graph("%y = nn.relu(%x) : f32[3]", "(%x: f32[3], %z: f32[4]) -> (%y: f32[3])")
    with pytest.raises(VerifyError, match="do not broadcast"):
        make_op(g, "nn.add", [g.inputs[0], g.inputs[1]])


def test_new_weights_are_read_only_and_renamed_on_collision():
    g = _graph("weight @w : f32[3]\n%y = nn.add(%x, @w) : f32[3]")
    rw = Rewriter(g, g.ops[0])
    v = rw.weight("w", np.zeros(3, np.float32))
    assert v.name == "w.1" and v.is_weight and rw.array(v) is g.weights["w.1"]
    assert not g.weights["w.1"].flags.writeable and rw.array(g.inputs[0]) is None
    with pytest.raises(VerifyError, match="already defined"):
        g.add_weight("w", np.zeros(3, np.float32), exact=True)


def test_apply_patterns_counts_rewrites_and_never_revisits_new_ops():
    g = _graph("""
        %0 = nn.relu(%x) : f32[3]
        %1 = nn.tanh(%0) : f32[3]
        %y = nn.relu(%1) : f32[3]""")
    seen = []

    def relu_to_relu(op, rw):  # would loop forever if new ops were offered again
        seen.append(op)
        return rw.op("nn.relu", [op.operands[0]]) if op is g.ops[0] else None

    assert apply_patterns(g, {"nn.relu": relu_to_relu}) == 1
    assert len(seen) == 2
    verify_graph(g)
    assert [op.kind for op in g.ops] == ["nn.relu", "nn.tanh", "nn.relu"]


def test_rewriter_op_goes_before_the_anchor_with_its_location():
    g = _graph("""
        %0 = nn.relu(%x) : f32[3]
        %y = nn.tanh(%0) : f32[3]""")
    anchor = g.ops[1]
    v = Rewriter(g, anchor).op("nn.sigmoid", [g.inputs[0]])
    assert g.ops[1] is v.producer and g.ops[2] is anchor and v.producer.loc == anchor.loc
