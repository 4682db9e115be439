"""Kernel context, op traits and `interp.apply`: what a kernel sees (attributes, operand and result
types, a seeded RNG), which ops fold-constants may evaluate, and how kernel errors are reported.

Test op kinds are declared in a fresh registry (`fresh_registry()`), never in the global one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from mpc.cli import main
from mpc.errors import KernelError
from mpc.ir import (
    DType,
    TensorType,
    apply,
    define,
    fresh_registry,
    known_kinds,
    lookup,
    parse,
    print_graph,
    run,
)
from mpc.passmanager import run_pipeline


@dataclass(frozen=True)
class NoiseAttrs:
    scale: float = 1.0
    seed: int = 0


def _noise(k, x):
    """x + scale·N(0, 1) drawn from the context's RNG; records the context for the test."""
    _noise.seen.append(k)
    return x + (k.attrs.scale * k.rng.standard_normal(x.shape)).astype(x.dtype)


_noise.seen = []

NOISE = """graph @g(%x: f32[N,4]) -> (%y: f64[N,4]) {
  %0 = test.noise(%x) {seed = 7} : f32[N,4]
  %y = nn.cast(%0) {to = f64} : f64[N,4]
}
"""


@pytest.fixture
def registry():
    """A fresh op registry holding test.noise (seeded, not pure) and test.fail (raises ValueError)."""
    with fresh_registry() as reg:
        define("test.noise", ("x",), "test only: add seeded Gaussian noise", lambda t, a: [t[0]], _noise,
               NoiseAttrs)
        define("test.fail", ("x",), "test only: refuses its data", lambda t, a: [t[0]], _fail, traits=("pure",))
        yield reg


def _fail(k, x):
    raise ValueError("data out of range")


def test_kernel_sees_its_types_and_a_seeded_rng(registry):
    _noise.seen.clear()
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = run(parse(NOISE), {"x": x})["y"]
    k = _noise.seen[-1]
    assert k.attrs == NoiseAttrs(1.0, 7)
    assert k.in_types == (TensorType(DType.f32, ("N", 4)),) and k.out_types == (TensorType(DType.f32, ("N", 4)),)
    want = x + np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(y, want.astype(np.float64))
    again = run(parse(NOISE), {"x": x})["y"]
    np.testing.assert_array_equal(again, y)           # deterministic: the seed, not a global RNG
    other = run(parse(NOISE.replace("seed = 7", "seed = 8")), {"x": x})["y"]
    assert not np.array_equal(other, y)


def test_rng_without_a_seed_attribute_is_fixed(registry):
    g = parse("graph @g(%x: f32[2]) -> (%y: f32[2]) {\n  %y = nn.relu(%x) : f32[2]\n}\n")
    seen = []
    apply(g.ops[0], [np.zeros(2, np.float32)], kernel=lambda k, x: seen.append(k.rng.random(3)) or x)
    apply(g.ops[0], [np.zeros(2, np.float32)], kernel=lambda k, x: seen.append(k.rng.random(3)) or x)
    np.testing.assert_array_equal(seen[0], np.random.default_rng(0).random(3))
    np.testing.assert_array_equal(seen[0], seen[1])


def test_apply_returns_a_tuple_with_the_kernels_result():
    g = parse("graph @g(%a: f32[3], %b: f32[3]) -> (%y: f32[3]) {\n  %y = nn.sub(%a, %b) : f32[3]\n}\n")
    out = apply(g.ops[0], [np.array([1, 2, 3], np.float32), np.array([3, 2, 1], np.float32)])
    assert isinstance(out, tuple) and len(out) == 1
    np.testing.assert_array_equal(out[0], np.array([-2, 0, 2], np.float32))


def test_kernel_error_names_op_kind_and_location(registry):
    text = "graph @g(%x: f32[N,2]) -> (%y: f32[N,2]) {\n  %0 = nn.relu(%x) : f32[N,2]\n" \
           "  %y = test.fail(%0) : f32[N,2]\n}\n"
    g = parse(text, filename="bad.mpc")
    with pytest.raises(KernelError) as e:
        run(g, {"x": np.zeros((1, 2), np.float32)})
    assert str(e.value) == "op 'test.fail' at bad.mpc:3:3: data out of range"


def test_fresh_registry_leaves_the_global_one_alone(registry):
    assert {"test.noise", "test.fail"} <= set(known_kinds())
    with fresh_registry():
        define("test.inner", ("x",), "test only", lambda t, a: [t[0]], lambda k, x: x)
        assert "test.inner" in known_kinds()
    assert "test.inner" not in known_kinds()


def test_global_registry_has_no_test_kinds():
    assert not [k for k in known_kinds() if k.startswith("test.")]


@pytest.mark.parametrize("traits, message", [(("foldable",), "'foldable' needs 'pure'"),
                                             (("pure", "stateful"), "'stateful' contradicts 'pure'"),
                                             (("cheap",), "unknown trait 'cheap'")])
def test_contradictory_or_unknown_traits_are_declaration_errors(traits, message):
    with fresh_registry(), pytest.raises(RuntimeError, match=message):
        define("test.bad", ("x",), "test only", lambda t, a: [t[0]], lambda k, x: x, traits=traits)


def test_every_kind_is_pure_and_nn_kinds_but_identity_are_foldable():
    for kind in known_kinds():
        traits = lookup(kind).traits
        # spiking neurons, pools and encoders keep state along time (or draw seeded spikes): stateful
        assert "pure" in traits or (kind.startswith("snn.") and "stateful" in traits), kind
        assert ("foldable" in traits) == (kind.startswith("nn.") and kind != "nn.identity"), kind


# -- fold-constants folds only foldable kinds ---------------------------------------------------
def _all_weight_graph(kind: str):
    w = {"a": np.array([1.0, -2.0], np.float32)}
    text = f"graph @g(%x: f32[2]) -> (%y: f32[2]) {{\n  weight @a : f32[2]\n  %0 = {kind}(@a) : f32[2]\n" \
           "  %y = nn.add(%x, %0) : f32[2]\n}\n"
    return parse(text, w)


def test_fold_constants_skips_a_kind_without_the_foldable_trait():
    with fresh_registry():
        define("test.pure_only", ("x",), "test only: pure, not foldable", lambda t, a: [t[0]],
               lambda k, x: -x, traits=("pure",))
        define("test.foldable", ("x",), "test only: pure and foldable", lambda t, a: [t[0]],
               lambda k, x: -x, traits=("pure", "foldable"))
        kept = _all_weight_graph("test.pure_only")
        before = print_graph(kept)
        records = run_pipeline(kept, "fold-constants")
        assert print_graph(kept) == before and records[0].stats["folded"] == 0
        folded = _all_weight_graph("test.foldable")
        run_pipeline(folded, "fold-constants")
        assert [op.kind for op in folded.ops] == ["nn.add"]
        np.testing.assert_array_equal(folded.weights["a.foldable"], np.array([-1.0, 2.0], np.float32))


def test_ops_lists_traits(capsys):
    assert main(["ops"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "[pure, foldable]" in lines["nn.add"] and "[pure]  " in lines["nn.identity"]
    assert "[pure]  " in lines["mp.dot"] and "foldable" not in lines["mp.conv2d"]
