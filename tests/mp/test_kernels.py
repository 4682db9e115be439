"""mpc.mp kernels against an independent float64 reference (the MP definition in mpc/mp/kernels.py).

The reference below builds p = [w + x; −w − x] and q = [w − x; −w + x] explicitly for every pair and
finds the threshold as the *largest* k with p_(k) > c_k (a different route from the kernels' max_k c_k,
Michelot or Condat); a second test checks it against bisection to machine precision.

Tolerance. y = (γD/2)(α − β) is a difference of two thresholds whose own magnitude is about
|α| + |β| + max|x| + max|w|, so rounding in any method shows up on that scale:
    |y − y_ref| ≤ rtol · (γD/2) · (|α_ref| + |β_ref| + max|x| + max|w|)
with rtol = 1e-6 for float64 inputs (the kernels reach ~1e-15) and 2e-5 for float32 inputs. `bisect`
gets its documented bound on top: γD(γ − γ/2D)/2^(B+1).
"""

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.mp import kernels as mp

METHODS = ("sort", "condat", "bisect", "fused")
RTOL = {np.float64: 1e-6, np.float32: 2e-5}


# ---------------------------------------------------------------------------------------------------
# independent reference
# ---------------------------------------------------------------------------------------------------

def ref_threshold(v, gamma):
    """α with Σ_i [v_i − α]_+ = γ: sort descending, take the largest k with v_(k) > (S_k − γ)/k."""
    s = sorted((float(e) for e in v), reverse=True)
    total, best = 0.0, None
    for k, value in enumerate(s, start=1):
        total += value
        c = (total - gamma) / k
        if value > c:
            best = c
    return best


def ref_bisect(v, gamma):
    """The same α by bisection on f(α) = Σ [v_i − α]_+ − γ, run to machine precision."""
    v = np.asarray(v, dtype=np.float64)
    lo, hi = v.max() - gamma, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0.0).sum() > gamma:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ref_mp_dot(x, w, gamma):
    """(y, alpha, beta) in float64 with p and q built explicitly for every pair."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    d = x.shape[1]
    alpha = np.empty((x.shape[0], w.shape[0]))
    beta = np.empty_like(alpha)
    for n in range(x.shape[0]):
        for h in range(w.shape[0]):
            p = np.concatenate([w[h] + x[n], -w[h] - x[n]])
            q = np.concatenate([w[h] - x[n], -w[h] + x[n]])
            alpha[n, h] = ref_threshold(p, gamma)
            beta[n, h] = ref_threshold(q, gamma)
    return gamma * d / 2 * (alpha - beta), alpha, beta


def bisect_bound(gamma, d, dtype):
    """The documented |y_bisect − y| bound: γD(γ − γ/2D)/2^(B+1)."""
    iters = mp.BISECT_ITERS_F32 if dtype == np.float32 else mp.BISECT_ITERS_F64
    return gamma * d * (gamma - gamma / (2 * d)) / 2.0 ** (iters + 1)


def assert_matches_reference(x, w, gamma, methods=METHODS):
    """Every method agrees with ref_mp_dot within the module's tolerance."""
    y_ref, alpha, beta = ref_mp_dot(x, w, gamma)
    d = x.shape[1]
    scale = gamma * d / 2 * (np.abs(alpha) + np.abs(beta) + np.abs(x).max() + np.abs(w).max())
    tol = RTOL[x.dtype.type] * scale
    for method in methods:
        y = mp.mp_dot(x, w, gamma, method=method)
        assert y.dtype == x.dtype and y.shape == y_ref.shape
        allowed = tol + (bisect_bound(gamma, d, x.dtype.type) if method == "bisect" else 0.0)
        err = np.abs(y.astype(np.float64) - y_ref)
        worst = np.unravel_index(np.argmax(err - allowed), err.shape)
        assert np.all(err <= allowed), (
            f"{method} {x.dtype}: |y - y_ref| = {err[worst]:.3g} > {allowed[worst]:.3g} "
            f"at {worst}, gamma={gamma}"
        )


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    """Compile every kernel once for both dtypes, so that no test pays numba's compile time alone."""
    for dtype in (np.float32, np.float64):
        x = np.linspace(0, 1, 24, dtype=dtype).reshape(2, 12)
        w = np.linspace(-0.1, 0.1, 36, dtype=dtype).reshape(3, 12)
        for method in METHODS:
            mp.mp_dot(x, w, 1.0, method=method)


# ---------------------------------------------------------------------------------------------------
# agreement with the reference
# ---------------------------------------------------------------------------------------------------

def test_reference_threshold_matches_bisection():
    rng = np.random.default_rng(0)
    for gamma in (1e-3, 0.5, 7.0, 300.0):
        v = rng.normal(size=17)
        assert abs(ref_threshold(v, gamma) - ref_bisect(v, gamma)) <= 1e-12 * max(1.0, gamma)


def test_mp_alpha_matches_reference():
    v = np.array([3.0, -1.0, 2.0, 2.0, 0.5])
    for gamma in (1e-6, 0.7, 4.0, 1e6):
        assert mp.mp_alpha(v, gamma) == pytest.approx(ref_threshold(v, gamma), rel=1e-12, abs=1e-12)


values = st.one_of(
    st.floats(-4, 4, allow_nan=False, width=32),
    st.sampled_from([0.0, 0.25, -0.25, 1.0, -1.0]),  # ties and exact zeros
)


@st.composite
def problems(draw):
    """Small (x, w, gamma, dtype) cases with ties, zeros, negative and positive thresholds."""
    n, h, d = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 10))
    x = np.array(draw(st.lists(values, min_size=n * d, max_size=n * d))).reshape(n, d)
    w = np.array(draw(st.lists(values, min_size=h * d, max_size=h * d))).reshape(h, d)
    gamma = 10.0 ** draw(st.floats(-4, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return x.astype(dtype), w.astype(dtype), gamma


@settings(max_examples=80, deadline=None)
@given(problems())
def test_methods_match_reference_on_random_small_problems(problem):
    x, w, gamma = problem
    assert_matches_reference(x, w, gamma)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [1e-6, 1e-2, 1.0, 30.0, 1e6])
@pytest.mark.parametrize("case", ["d1", "equal", "equal_wide", "zero", "ties", "n1", "h1"])
def test_edge_cases(case, gamma, dtype):
    rng = np.random.default_rng(1)
    x, w = {
        "d1": (rng.normal(size=(4, 1)), rng.normal(size=(3, 1))),
        "equal": (np.full((3, 6), 0.5), np.full((2, 6), 0.5)),
        # float32 rounds α = 2 − γ/64 onto the entries themselves for tiny γ
        "equal_wide": (np.ones((3, 64)), np.ones((4, 64))),
        "zero": (np.zeros((3, 5)), np.zeros((4, 5))),
        "ties": (rng.integers(-2, 3, size=(4, 7)) / 2, rng.integers(-2, 3, size=(5, 7)) / 2),
        "n1": (rng.normal(size=(1, 9)), rng.normal(size=(6, 9))),
        "h1": (rng.normal(size=(6, 9)), rng.normal(size=(1, 9))),
    }[case]
    assert_matches_reference(x.astype(dtype), w.astype(dtype), gamma)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [0.3, 4.0, 40.0, 400.0])
@pytest.mark.parametrize("layout", ["dense", "signed", "swapped"])
def test_fused_band_path(layout, gamma, dtype):
    """Wide rows with |x| ≫ |w| take the banded solve (sure set + band); check it on both signs of x,
    with x and w swapped (the kernel then makes w the rows), and across the sign of α."""
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (9, 160))
    w = rng.uniform(-1, 1, (37, 160)) / 40
    if layout == "signed":
        x = x * rng.choice([-1.0, 1.0], size=x.shape)
    if layout == "swapped":
        x, w = w[:9], x
    assert_matches_reference(x.astype(dtype), w.astype(dtype), gamma, methods=("fused",))


def test_fused_does_not_depend_on_thread_count():
    """Tiles are fixed by constants and reductions run inside a tile: bit-identical results."""
    import numba

    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (70, 120)).astype(np.float32)
    w = (rng.uniform(-1, 1, (90, 120)) / 30).astype(np.float32)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = mp.mp_dot_fwd(x, w, 20.0)
        grads_single = mp.mp_dot_bwd(np.ones((70, 90), np.float32), x, w, 20.0, *single[1:])
    finally:
        numba.set_num_threads(threads)
    multi = mp.mp_dot_fwd(x, w, 20.0)
    grads_multi = mp.mp_dot_bwd(np.ones((70, 90), np.float32), x, w, 20.0, *multi[1:])
    for a, b in zip(single + grads_single, multi + grads_multi):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["sort", "fused"])
def test_huge_gamma_gives_zero(method):
    """γ ≥ 2D·max|w ± x|: every entry is active, α = β = −γ/2D and y = 0 exactly (condat and bisect
    reach it up to rounding, checked by test_edge_cases)."""
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    assert np.all(mp.mp_dot(x, w, 1e6, method=method) == 0)


def test_fwd_returns_thresholds_and_counts():
    rng = np.random.default_rng(4)
    x, w, gamma = rng.normal(size=(4, 6)), rng.normal(size=(3, 6)), 1.5
    y, alpha, beta, k_alpha, k_beta = mp.mp_dot_fwd(x, w, gamma)
    y_ref, alpha_ref, beta_ref = ref_mp_dot(x, w, gamma)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(beta, beta_ref, rtol=1e-12, atol=1e-12)
    for n in range(4):
        for h in range(3):
            u, v = w[h] + x[n], w[h] - x[n]
            assert k_alpha[n, h] == np.sum(np.concatenate([u, -u]) > alpha_ref[n, h] + 1e-12)
            assert k_beta[n, h] == np.sum(np.concatenate([v, -v]) > beta_ref[n, h] + 1e-12)


def test_mp_correlates_with_dot_product():
    """Sanity of the definition: w ~ U(−1,1)/√D, x ~ U(0,1), D = 784, γ = 200 gives a
    Pearson correlation near 0.95 with wᵀx (0.939–0.950 over seeds 0–2); 0.9 leaves room."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (48, 784))
    w = rng.uniform(-1, 1, (48, 784)) / np.sqrt(784)
    y = mp.mp_dot(x, w, 200.0)
    assert np.corrcoef(y.ravel(), (x @ w.T).ravel())[0, 1] > 0.9


# ---------------------------------------------------------------------------------------------------
# dtypes and errors
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_dtypes(method):
    x32 = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6)
    w32 = np.linspace(0, 0.5, 18, dtype=np.float32).reshape(3, 6)
    assert mp.mp_dot(x32, w32, 1.0, method=method).dtype == np.float32
    assert mp.mp_dot(x32.astype(np.float64), w32.astype(np.float64), 1.0, method=method).dtype == np.float64
    assert mp.mp_dot(x32, w32.astype(np.float64), 1.0, method=method).dtype == np.float64
    assert mp.mp_dot(x32.astype(np.int64), w32, 1.0, method=method).dtype == np.float64


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["x", "w"])
def test_nonfinite_inputs_raise(which, bad):
    x, w = np.ones((2, 3)), np.ones((4, 3))
    (x if which == "x" else w)[1, 2] = bad
    with pytest.raises(ValueError, match=f"input {which} contains NaN/inf"):
        mp.mp_dot(x, w, 1.0)


@pytest.mark.parametrize("gamma", [0.0, -1.0, np.nan, np.inf, "big", None])
def test_bad_gamma_raises(gamma):
    with pytest.raises(ValueError, match="gamma"):
        mp.mp_dot(np.ones((2, 3)), np.ones((4, 3)), gamma)


@pytest.mark.parametrize("x_shape, w_shape", [((3,), (4, 3)), ((2, 3), (3,)), ((2, 3, 1), (4, 3)),
                                             ((2, 3), (4, 5)), ((2, 0), (4, 0))])
def test_bad_shapes_raise(x_shape, w_shape):
    with pytest.raises(ValueError, match="mp_dot"):
        mp.mp_dot(np.ones(x_shape), np.ones(w_shape), 1.0)


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        mp.mp_dot(np.ones((2, 3)), np.ones((4, 3)), 1.0, method="magic")


def test_empty_batch():
    assert mp.mp_dot(np.ones((0, 3)), np.ones((4, 3)), 1.0).shape == (0, 4)


# ---------------------------------------------------------------------------------------------------
# multiplierless source: the hardware form (bisect) only; `fused` is a CPU kernel and may divide
# ---------------------------------------------------------------------------------------------------

HARDWARE_FORM = ("_bisect_kernel", "_bisect_threshold")
# A product is allowed only by the halving constant or by the output gain γD/2, a power of two on the
# calibrated grid (a shift); both are named constants, never data. Any other product, any division,
# power or matrix product is a multiplier.
SHIFTS = {"half", "scale"}
FORBIDDEN_OPS = ("Div", "FloorDiv", "Mod", "Pow", "MatMult")


def _is_shift(node) -> bool:
    import ast

    if isinstance(node, ast.Name):
        return node.id in SHIFTS
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and node.value > 0:
        return np.frexp(node.value)[0] == 0.5   # a power of two
    return False


def multipliers(source: str) -> list[str]:
    """Every product, division, power or matrix product in `source` that is not a shift."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.dot", "np.matmul", "np.multiply"):
            found.append(ast.unparse(node))
        if not isinstance(node, (ast.BinOp, ast.AugAssign)):
            continue
        left, right = (node.left, node.right) if isinstance(node, ast.BinOp) else (node.target, node.value)
        op = type(node.op).__name__
        if op in FORBIDDEN_OPS or (op == "Mult" and not (_is_shift(left) or _is_shift(right))):
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("name", HARDWARE_FORM)
def test_bisect_source_has_only_adds_compares_and_shifts(name):
    import textwrap

    source = textwrap.dedent(inspect.getsource(getattr(mp, name).py_func))
    assert multipliers(source) == [], f"{name} multiplies data"


def test_the_multiplier_check_finds_multipliers():
    """The check above can fail: each line here is a multiplier it must report."""
    source = ("def f(x, w, half, k):\n    a = x * w\n    b = x / 2\n    c = half * x\n    d = x * 3\n"
              "    e = x @ w\n    f = np.dot(x, w)\n    a *= w\n    g = x * 0.25\n    h = x ** 2\n")
    assert sorted(multipliers(source)) == sorted(["x * w", "x / 2", "x * 3", "x @ w", "np.dot(x, w)", "a *= w",
                                                  "x ** 2"])


def test_bisect_is_the_method_that_runs():
    """mp_dot(method='bisect') dispatches to the kernel checked above (not, e.g., to fused)."""
    src = inspect.getsource(mp.mp_dot)
    assert "_bisect_kernel(" in src
    x, w = np.random.default_rng(0).standard_normal((2, 2, 5))
    got = mp.mp_dot(x, w, 0.5, method="bisect")
    y = np.empty((2, 2))
    mp._bisect_kernel(x, w, 0.5, 0.5 / 10, 0.5 * 5 / 2, mp.BISECT_ITERS_F64, y)
    np.testing.assert_array_equal(got, y)
