"""The new op kinds in the IR's text form: print -> parse -> print is the identity, and the verifier's
errors name the line:col and say what was expected."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import MPCError
from mpc.ir import parse, print_graph

from .torch_cases import CASES


def _zeros(name, ty):
    return np.zeros(ty.shape, ty.dtype.numpy)


@pytest.mark.parametrize("case", sorted(CASES))
def test_print_parse_print_is_the_identity(case):
    text = print_graph(parse(CASES[case].replace("{t}", "f32"), _zeros))
    assert print_graph(parse(text, _zeros)) == text


BAD = {
    "where on floats": ("%y = nn.where(%x, %x, %x) : f32[2,3]", "operand must be bool, got f32"),
    "repeated axes": ("%y = nn.reduce(%x) {mode = sum, axes = [1, -1]} : f32[2,1]", "repeated axes [1, -1]"),
    "unknown mode": ("%y = nn.reduce(%x) {mode = median} : f32[1,1]", "expected one of ['sum', 'mean'"),
    "float mean only": ("%y = nn.reduce(%i) {mode = mean} : i32[1,1]", "operand must be float, got i32"),
    "bad expand": ("%y = nn.expand(%x) {shape = [4, 1]} : f32[4,3]", "does not broadcast with shape [4, 1]"),
    "pads length": ("%y = nn.pad(%x) {pads = [1, 1]} : f32[2,3]", "pads [1, 1] must be 4 non-negative ints"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_verifier_errors_say_what_was_expected(case):
    line, message = BAD[case]
    out = line.rsplit(":", 1)[1].strip()
    text = f"graph @g(%x: f32[2,3], %i: i32[2,3]) -> (%y: {out}) {{\n  {line}\n}}"
    with pytest.raises(MPCError) as e:
        parse(text, _zeros)
    assert message in str(e.value) and ":2:" in str(e.value), str(e.value)
