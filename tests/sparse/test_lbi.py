"""Classic LBI on a noise-free synthetic sparse regression: it recovers the true support, its path
is monotone, and the shrink operators follow their definitions (written out here)."""
import numpy as np
import pytest

from mpc.sparse.lbi import Grouping, group_shrink, lbi_path, shrink, top_mask


def _problem(seed=0, n=120, d=40, k=5):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    u = np.zeros((d, 1))
    support = rng.choice(d, k, replace=False)
    u[support, 0] = rng.choice([-1.0, 1.0], k) * rng.uniform(1.0, 2.0, k)
    return a, a @ u, u


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbi_recovers_the_true_support_of_a_noise_free_sparse_regression(seed):
    a, f, u_true = _problem(seed)
    res = lbi_path(a, f, lam=5.0, iters=4000)
    assert set(np.flatnonzero(res.u[:, 0])) == set(np.flatnonzero(u_true[:, 0]))
    np.testing.assert_allclose(res.u, u_true, atol=1e-3)          # the fit converges to the true weights
    assert np.linalg.norm(a @ res.u - f) < 1e-3 * np.linalg.norm(f)


def test_lbi_path_is_monotone_and_starts_empty():
    a, f, u_true = _problem(3)
    res = lbi_path(a, f, lam=5.0, iters=4000)
    path = np.array(res.path)
    assert path[0] == 0
    assert np.all(np.diff(path) >= 0)
    assert path[-1] == np.count_nonzero(u_true)


def test_lbi_stops_when_the_support_reaches_the_requested_size():
    a, f, _ = _problem(4)
    res = lbi_path(a, f, lam=5.0, iters=4000, stop_nnz=3)
    assert res.path[-1] >= 3 and all(p < 3 for p in res.path[:-1])


def test_shrink_is_the_soft_threshold():
    v = np.array([-2.0, -0.5, 0.0, 0.3, 1.5])
    np.testing.assert_array_equal(shrink(v, 0.5), [-1.5, 0.0, 0.0, 0.0, 1.0])


def test_group_shrink_uses_threshold_lambda_sqrt_group_size():
    g = np.array([[3.0, 4.0], [0.3, 0.4]])       # norms 5 and 0.5; threshold 1·√2
    out = group_shrink(g, 1.0)
    np.testing.assert_allclose(out[0], g[0] * (1 - np.sqrt(2) / 5))
    np.testing.assert_array_equal(out[1], [0.0, 0.0])


def test_groupings_round_trip_and_group_the_right_entries():
    u = np.arange(24.0).reshape(6, 4)            # D = 2 channels x 3 taps, H = 4 outputs
    for grouping in (Grouping(), Grouping("rows"), Grouping("kernels", 3)):
        np.testing.assert_array_equal(grouping.from_groups(grouping.to_groups(u), u.shape), u)
    np.testing.assert_array_equal(Grouping("rows").to_groups(u)[1], u[:, 1])
    np.testing.assert_array_equal(Grouping("kernels", 3).to_groups(u)[1], u[3:6, 0])


def test_top_mask_keeps_whole_groups_by_priority():
    prio = np.array([[1.0, 5.0], [1.0, 5.0], [1.0, 5.0]])
    mask = top_mask(prio, 3, Grouping("rows"))
    np.testing.assert_array_equal(mask, [[False, True]] * 3)
