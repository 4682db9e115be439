"""Masks in the IR: sp.mask prints its count, parses back, runs as `w where mask`, and the verifier
checks its shape, element type and count, citing file:line:col."""
import numpy as np
import pytest

from mpc.errors import VerifyError
from mpc.ir import parse, print_graph, run
from mpc.ir.ops_sparse import dense_from_csr
from mpc.sparse.kernels import csr_from_dense, csr_matmul

TEXT = """graph @g(%x: f32[N,4]) -> (%y: f32[N,3]) {
  weight @fc0.weight : f32[4,3]
  weight @fc0.mask : bool[4,3]
  %0 = sp.mask(@fc0.weight, @fc0.mask) {nnz = 5, size = 12} : f32[4,3]
  %y = nn.matmul(%x, %0) : f32[N,3]
}
"""
W = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
M = np.zeros((4, 3), bool)
M.flat[[0, 3, 5, 7, 11]] = True


def test_mask_round_trips_through_the_text_form_and_runs_as_a_masked_product():
    g = parse(TEXT, {"fc0.weight": W, "fc0.mask": M})
    assert print_graph(g) == TEXT
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    want = x.astype(np.float64) @ (W * M)     # the definition, in float64
    np.testing.assert_allclose(run(g, {"x": x})["y"], want, rtol=1e-6)


def test_wrong_count_is_rejected_with_its_location():
    m = M.copy()
    m[0, 1] = True
    with pytest.raises(VerifyError, match=r"m\.mpc:4:3: 'sp.mask': nnz = 5 but mask @fc0.mask has 6 non-zeros"):
        parse(TEXT, {"fc0.weight": W, "fc0.mask": m}, filename="m.mpc")


def test_wrong_shape_and_dtype_are_rejected():
    bad_shape = TEXT.replace("bool[4,3]", "bool[3,4]")
    with pytest.raises(VerifyError, match="mask shape \\[3, 4\\] differs from weight shape \\[4, 3\\]"):
        parse(bad_shape, {"fc0.weight": W, "fc0.mask": M.T.copy()})
    bad_type = TEXT.replace("bool[4,3]", "f32[4,3]")
    with pytest.raises(VerifyError, match="mask must be bool"):
        parse(bad_type, {"fc0.weight": W, "fc0.mask": M.astype(np.float32)})


def test_csr_kernel_matches_the_dense_product():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((7, 5)) * (rng.random((7, 5)) < 0.3)
    w[:, 2] = 0.0                                           # an output with no stored entries
    x = rng.standard_normal((4, 7))
    data, idx, ptr = csr_from_dense(w)
    assert data.size == np.count_nonzero(w)
    np.testing.assert_array_equal(dense_from_csr(data, idx, ptr, 7), w)
    np.testing.assert_allclose(csr_matmul(x, data, idx, ptr), x @ w, rtol=1e-12, atol=1e-12)
