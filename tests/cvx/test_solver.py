"""mpc.snn.cvx: FISTA optimum vs CVXPY (Clarabel), the dual as a lower bound on every iterate, the gap closing,
group Lasso with singleton groups equal to the Lasso, the dictionary's column removal."""
from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from mpc.snn.cvx import Loss, build_dictionary, labels_matrix, lambda_max, solve


def _problem(seed: int, n: int, m: int, loss: Loss, k: int = 3):
    rng = np.random.default_rng(seed)
    phi = (rng.random((n, m)) < 0.3).astype(np.float64)   # spike-like 0/1 dictionary
    w = rng.normal(size=(m, k))
    if loss is Loss.SQUARED:
        return phi, phi @ w[:, :1] + 0.1 * rng.normal(size=(n, 1))
    if loss is Loss.LOGISTIC:
        return phi, labels_matrix((phi @ w[:, 0] + 0.3 * rng.normal(size=n) > np.median(phi @ w[:, 0])).astype(int),
                                  loss)
    return phi, labels_matrix(np.argmax(phi @ w + 0.3 * rng.normal(size=(n, k)), axis=1), loss, k)


def _cvxpy_value(phi, y, lam, loss: Loss, group: bool) -> float:
    """The optimum written from the definition, solved by Clarabel."""
    n = phi.shape[0]
    b = cp.Variable((phi.shape[1], y.shape[1]))
    z = phi @ b
    if loss is Loss.SQUARED:
        f = cp.sum_squares(z - y) / (2 * n)
    elif loss is Loss.LOGISTIC:
        f = cp.sum(cp.logistic(-cp.multiply(y, z))) / n
    else:
        f = (cp.sum(cp.log_sum_exp(z, axis=1)) - cp.sum(cp.multiply(y, z))) / n
    pen = cp.sum(cp.norm(b, 2, axis=1)) if group else cp.sum(cp.abs(b))
    prob = cp.Problem(cp.Minimize(f + lam * pen))
    prob.solve(solver=cp.CLARABEL)   # Clarabel defaults: gaps and feasibility 1e-8
    assert prob.status == "optimal"
    return float(prob.value)


CASES = [(Loss.SQUARED, False), (Loss.LOGISTIC, False), (Loss.SOFTMAX, True), (Loss.SOFTMAX, False)]


@pytest.mark.parametrize("loss,group", CASES)
@pytest.mark.parametrize("seed,method", [(0, "fista"), (1, "fista"), (0, "newton"), (1, "newton")])
def test_fista_matches_cvxpy(loss, group, seed, method):
    phi, y = _problem(seed, 60, 25, loss)
    lam = 0.05 * lambda_max(phi, y, loss, group)
    sol = solve(phi, y, lam, loss, group, tol=1e-8, method=method)
    ref = _cvxpy_value(phi, y, lam, loss, group)
    assert sol.converged, sol.reason
    assert abs(sol.primal - ref) <= 1e-6 * abs(ref)
    assert sol.dual <= ref * (1 + 1e-9)        # the certificate bounds the true optimum from below


@pytest.mark.parametrize("loss,group", CASES)
@pytest.mark.parametrize("method", ["fista", "newton"])
def test_dual_lower_bounds_every_iterate_and_gap_closes(loss, group, method):
    phi, y = _problem(3, 50, 20, loss)
    lam = 0.02 * lambda_max(phi, y, loss, group)
    ref = _cvxpy_value(phi, y, lam, loss, group)
    sol = solve(phi, y, lam, loss, group, tol=1e-6, keep_history=True, method=method)
    primal, dual = np.array(sol.history).T
    slack = 1e-7 * abs(ref)                      # Clarabel's own accuracy (gaps 1e-8)
    assert np.all(dual <= ref + slack) and np.all(primal >= ref - slack)
    assert np.all(dual <= primal)
    assert sol.converged and sol.rel_gap <= 1e-6
    gaps = primal - dual
    assert gaps[-1] < 1e-3 * gaps[0]


def test_group_lasso_with_singleton_groups_is_lasso():
    phi, y = _problem(4, 40, 15, Loss.SQUARED)
    lam = 0.05 * lambda_max(phi, y, Loss.SQUARED, False)
    a = solve(phi, y, lam, Loss.SQUARED, group=False, tol=1e-10)
    b = solve(phi, y, lam, Loss.SQUARED, group=True, tol=1e-10)   # one output: each row is one entry
    assert abs(a.primal - b.primal) <= 1e-9 * a.primal
    assert np.allclose(a.beta, b.beta, atol=1e-6)


def test_lambda_max_gives_zero_and_stops_at_once():
    phi, y = _problem(5, 30, 10, Loss.SOFTMAX)
    lam = 1.01 * lambda_max(phi, y, Loss.SOFTMAX, True)
    sol = solve(phi, y, lam, Loss.SOFTMAX, True)
    assert sol.converged and not sol.beta.any()
    assert abs(sol.primal - np.log(3)) < 1e-12     # B = 0: uniform probabilities over 3 classes


def test_reports_why_it_stopped():
    phi, y = _problem(6, 40, 15, Loss.LOGISTIC)
    sol = solve(phi, y, 1e-4 * lambda_max(phi, y, Loss.LOGISTIC, False), Loss.LOGISTIC, tol=1e-12, max_iter=5)
    assert not sol.converged and "5 iterations" in sol.reason and sol.iterations == 5


def test_dictionary_removes_duplicate_and_zero_columns():
    f = np.array([[1, 0, 1, 0, 2], [0, 0, 0, 1, 0], [1, 0, 1, 1, 1]], np.float64)
    d = build_dictionary(f)
    assert d.keep.tolist() == [0, 3, 4]            # column 2 repeats column 0, column 1 is zero
    full = d.expand(np.array([[1.0], [2.0], [3.0]]))
    assert full[:, 0].tolist() == [1.0, 0.0, 0.0, 2.0, 3.0]
    assert np.array_equal(f @ full, d.phi @ np.array([[1.0], [2.0], [3.0]]))


@pytest.mark.parametrize("group", [True, False])
def test_two_class_softmax_reduction_matches_cvxpy(group):
    phi, y = _problem(7, 60, 25, Loss.SOFTMAX, k=2)
    lam = 0.03 * lambda_max(phi, y, Loss.SOFTMAX, group)
    ref = _cvxpy_value(phi, y, lam, Loss.SOFTMAX, group)
    sol = solve(phi, y, lam, Loss.SOFTMAX, group, tol=1e-8)              # auto: solved as a logistic Lasso
    assert sol.converged and abs(sol.primal - ref) <= 1e-6 * abs(ref) and sol.dual <= ref * (1 + 1e-9)
    assert np.allclose(sol.beta[:, 0], -sol.beta[:, 1])                 # B = [w/2, −w/2]
    direct = solve(phi, y, lam, Loss.SOFTMAX, group, tol=1e-8, method="fista")
    assert abs(direct.primal - sol.primal) <= 1e-6 * abs(ref)
