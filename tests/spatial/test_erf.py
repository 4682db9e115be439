"""The float32 error function of mpc.kernels_spatial against math.erf (double precision)."""
from __future__ import annotations

import math

import numpy as np

from mpc import kernels_spatial as S


def test_float32_erf_is_within_half_an_ulp_of_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 40001), np.logspace(-30, 1, 2000), -np.logspace(-30, 1, 2000),
                        [0.0, 0.5, -0.5, np.nextafter(0.5, 0), np.nextafter(0.5, 1)]])
    want = np.array([math.erf(v) for v in x])
    got = S._erf_fast(x)
    rel = np.abs(got - want) / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
    assert float(rel.max()) < 6e-8   # half of float32's epsilon is 5.96e-8
    assert S.erf(np.float32([0.25])).dtype == np.float32
    np.testing.assert_array_equal(S.erf(x), want)   # float64 goes through math.erf itself
