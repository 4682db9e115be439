"""Operation tallies of the fixed-point kernels: what one op's kernel performs, by kind, per sample.

A `Tally` reaches a kernel through its context (`k.tally`, None on the normal path); the helpers
below add the operations of shifts, overflow handling and windows. Kinds and counting conventions
are described in mpc.fx.count, which runs graphs with one tally per op.
"""
from __future__ import annotations

import numpy as np

KINDS = ("add", "compare", "shift", "multiply", "divide")


class Tally:
    """Operations per sample of one op, by kind: int64 arrays of length `samples`."""

    def __init__(self, samples: int):
        self.samples = samples
        self.per_sample = {k: np.zeros(samples, np.int64) for k in KINDS}

    def add(self, kind: str, counts) -> None:
        """Add per-sample counts (an array over the batch, or one number for every sample)."""
        self.per_sample[kind] += np.asarray(counts, dtype=np.int64)

    def add_total(self, kind: str, total: int) -> None:
        """Add `total` operations spread evenly over the samples (data-independent work)."""
        if total:
            self.per_sample[kind] += int(total) // max(1, self.samples)

    def add_where(self, kind: str, mask: np.ndarray) -> None:
        """Add one operation per true element of `mask`, whose leading axis is the batch."""
        self.per_sample[kind] += np.asarray(mask).reshape(self.samples, -1).sum(axis=1, dtype=np.int64)


def shift(t: Tally, size: int, s: int, nearest: bool) -> None:
    """`size` values shifted by s (s > 0: right with rounding; s < 0: exact left; 0: nothing)."""
    if s != 0:
        t.add_total("shift", size)
    if s > 0 and nearest:
        t.add_total("add", size)


def overflow(t: Tally, q: np.ndarray, width: int, saturate: bool) -> None:
    """The tests of bringing int64 values `q` (leading axis: batch) into a signed `width`-bit range."""
    hi = (1 << (width - 1)) - 1
    t.add_total("compare", q.size)
    if saturate:
        t.add_where("compare", q <= hi)
        return
    low = q & np.int64((1 << width) - 1) if width < 64 else q
    t.add_where("add", low > hi)


def taps(x_shape, kernel, strides, pads, dilations, ceil_mode: bool = False) -> int:
    """In-bounds taps summed over every window of one channel of an input of shape [.., H, W]."""
    from mpc import kernels_np as K
    ones = np.ones((1, 1) + tuple(x_shape[-2:]), np.int64)
    xp, out = K.padded(ones, kernel, strides, pads, dilations, 0, ceil_mode)
    return int(sum(int(v.sum()) for _, _, v in K.taps(xp, kernel, strides, dilations, out)))


def sparse_taps(x_shape, w: np.ndarray, strides, pads, dilations) -> int:
    """Products of a convolution that skips zero weights: for each non-zero w[oc, ci, ky, kx], the
    output positions where tap (ky, kx) falls inside an input of shape [.., H, W]."""
    from mpc import kernels_np as K
    kh, kw = w.shape[2:]
    ones = np.ones((1, 1) + tuple(x_shape[-2:]), np.int64)
    xp, out = K.padded(ones, (kh, kw), strides, pads, dilations, 0, False)
    inside = np.zeros((kh, kw), np.int64)
    for ky, kx, v in K.taps(xp, (kh, kw), strides, dilations, out):
        inside[ky, kx] = int(v.sum())
    return int(((w != 0).sum(axis=(0, 1)) * inside).sum())
