"""The one Pearson correlation (mpc.data.Pearson / pearson) that verify and mp-calibrate share,
checked against NumPy's corrcoef on the concatenated data."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.data import Pearson, pearson


@pytest.mark.parametrize("offset", [0.0, 1e7])
def test_pairs_added_one_by_one_match_corrcoef_of_their_concatenation(offset):
    """Batches of different sizes; a large common offset is where raw sums of squares lose every digit."""
    rng = np.random.default_rng(0)
    a = [offset + rng.standard_normal(n) for n in (1, 7, 256, 33)]
    b = [x + 0.5 * rng.standard_normal(x.size) for x in a]
    acc = Pearson()
    for x, y in zip(a, b):
        acc.add(x, y)
    want = np.corrcoef(np.concatenate(a), np.concatenate(b))[0, 1]
    assert acc.value() == pytest.approx(want, rel=1e-9)


def test_one_pair_is_the_centred_formula_and_degenerate_cases_are_none():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5))
    y = 2 * x + rng.standard_normal((4, 5))
    assert pearson(x, y) == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], rel=1e-12)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(np.ones(5), np.arange(5.0)) is None
    assert Pearson().value() is None
    assert Pearson().add(np.ones(3), np.ones(4)).value() is None   # sizes differ: skipped
