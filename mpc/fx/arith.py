"""Integer kernels with explicit rounding and overflow: the fixed-point emulator.

A value of type fx<W,F> is stored as the integer q with real value q·2^-F. Conventions, shared with
the C backend (which must agree bit for bit):
- rounding `floor`: a right shift by s is floor(q / 2^s) (an arithmetic shift);
  rounding `nearest`: floor((q + 2^(s-1)) / 2^s), i.e. ties go toward +infinity (round half up);
  a left shift is exact.
- overflow `saturate`: clamp to [-2^(W-1), 2^(W-1) - 1]; `wrap`: keep the low W bits, two's complement.
- A float converts as q = floor(x·2^F) (floor) or floor(x·2^F + 1/2) (nearest), then overflows;
  NaN converts to 0.
- Integer MP: α is found by bisection over the bracket [max|u| - G, max|u|] (G = γ at the common
  fraction) with `halvings` = bit length of G steps, using only adds, compares and shifts.
"""
from __future__ import annotations

import enum

import numpy as np

from mpc import kernels_np as K

ROW_BUDGET = 1 << 22   # int64 elements per chunk of the MP bisection (keeps memory O(rows·H) per chunk)


class Rounding(enum.Enum):
    """How a right shift (or a float conversion) drops fraction bits."""

    NEAREST = "nearest"
    FLOOR = "floor"


class Overflow(enum.Enum):
    """What happens to a value outside the result's range."""

    SATURATE = "saturate"
    WRAP = "wrap"


def round_shift(q: np.ndarray, s: int, rounding: Rounding) -> np.ndarray:
    """q·2^-s as an integer: exact left shift for s <= 0, else a right shift with `rounding`."""
    q = np.asarray(q, dtype=np.int64)
    if s <= 0:
        return q << np.int64(-s)
    if rounding is Rounding.NEAREST:
        q = q + np.int64(1 << (s - 1))
    return q >> np.int64(s)


def shift_to(q: np.ndarray, frac_in: int, frac_out: int, rounding: Rounding) -> np.ndarray:
    """Stored integers at `frac_in` fractional bits re-expressed at `frac_out`."""
    return round_shift(q, frac_in - frac_out, rounding)


def overflow(q: np.ndarray, width: int, mode: Overflow, container: np.dtype) -> np.ndarray:
    """int64 values brought into a signed `width`-bit range by `mode`, stored in `container`."""
    q = np.asarray(q, dtype=np.int64)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if mode is Overflow.SATURATE:
        return np.clip(q, lo, hi).astype(container)
    if width == 64:
        return q.astype(container)
    low = q & np.int64((1 << width) - 1)
    return np.where(low > hi, low - np.int64(1 << width), low).astype(container)


def from_float(x: np.ndarray, frac: int, width: int, rounding: Rounding, mode: Overflow,
               container: np.dtype) -> np.ndarray:
    """Real values to stored integers at `frac` fractional bits (see the module docstring)."""
    scaled = np.ldexp(np.asarray(x, dtype=np.float64), frac)
    scaled = np.floor(scaled + 0.5) if rounding is Rounding.NEAREST else np.floor(scaled)
    scaled = np.nan_to_num(scaled, nan=0.0)
    lim = float(1 << 62)   # beyond int64 every mode saturates first: wrap of an unbounded float is undefined
    q = np.clip(scaled, -lim, lim).astype(np.int64)
    return overflow(q, width, mode, container)


def dequantize(q: np.ndarray, frac: int, dtype: np.dtype) -> np.ndarray:
    """Stored integers at `frac` fractional bits as reals of `dtype`."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -frac).astype(dtype)


def conv2d(x: np.ndarray, w: np.ndarray, strides, pads, dilations, group) -> np.ndarray:
    """Exact integer 2-D convolution (int64; zero padding), NCHW, weights MCkk."""
    return K.conv2d(x.astype(np.int64), w.astype(np.int64), None, strides, pads, dilations, group)


def maxpool2d(x: np.ndarray, kernel, strides, pads, dilations, ceil_mode) -> np.ndarray:
    """Integer max pooling; padding holds the most negative int64, so it never wins."""
    xp, out = K.padded(x.astype(np.int64), kernel, strides, pads, dilations, np.iinfo(np.int64).min, ceil_mode)
    y = None
    for _, _, v in K.taps(xp, kernel, strides, dilations, out):
        y = v.copy() if y is None else np.maximum(y, v, out=y)
    return y


def avgpool2d(x: np.ndarray, kernel, strides, pads, dilations) -> np.ndarray:
    """The window sums (zero padding, int64); the caller divides by the window area with a shift."""
    xp, out = K.padded(x.astype(np.int64), kernel, strides, pads, dilations, 0)
    y = np.zeros(x.shape[:2] + tuple(out), dtype=np.int64)
    for _, _, v in K.taps(xp, kernel, strides, dilations, out):
        y += v
    return y


def mp_alpha(a: np.ndarray, gamma: int, halvings: int, counts: dict | None = None) -> np.ndarray:
    """Integer MP threshold over the last axis of a = |u| (int64): the largest integer α with
    Σ_j [a_j - α]_+ + [-a_j - α]_+ >= gamma, by `halvings` bisection steps over [max a - gamma, max a].
    With `counts` (kind -> int64 array of shape a.shape[:-1]) it adds the operations of each search,
    by the conventions of mpc.fx.count."""
    top = a.max(axis=-1)
    lo, hi = top - gamma, top.copy()
    if counts is not None:
        counts["compare"] += a.shape[-1] - 1
        counts["add"] += 1
    for _ in range(halvings):
        mid = lo + ((hi - lo) >> 1)
        m = mid[..., None]
        pos, neg = np.maximum(a - m, 0), np.maximum(-a - m, 0)
        f = (pos + neg).sum(axis=-1)
        if counts is not None:
            _count_step(counts, pos, neg, gamma)
        ge = f >= gamma
        lo, hi = np.where(ge, mid, lo), np.where(ge, hi, mid)
    return lo


def _count_step(counts: dict, pos: np.ndarray, neg: np.ndarray, gamma: int) -> None:
    """One bisection step as the C runs it: elements are visited while the running sum is below γ."""
    part = pos + neg
    visited = np.cumsum(part, axis=-1) - part < gamma   # the sum before element i; it only grows
    v = visited.sum(axis=-1)
    n = part.shape[-1]
    counts["add"] += 3 + 2 * v + ((pos > 0) & visited).sum(axis=-1) + ((neg > 0) & visited).sum(axis=-1)
    counts["shift"] += 1
    counts["compare"] += 2 * v + np.minimum(v + 1, n) + 1


def mp_dot(xs: np.ndarray, ws: np.ndarray, gamma: int, shifts: np.ndarray, signs: np.ndarray,
           counts: dict | None = None) -> np.ndarray:
    """Integer MP layer on rows xs [R, D] and weights ws [H, D] (int64, one common fraction):
    y[r, h] = Σ_t signs[h, t]·((α - β) << shifts[h, t]) with α, β the thresholds of |xs + ws|, |xs - ws|.
    With `counts` (kind -> int64 array [R]) it adds each row's operations (see mpc.fx.count)."""
    r, d = xs.shape
    h = ws.shape[0]
    halvings = int(gamma).bit_length()
    y = np.empty((r, h), dtype=np.int64)
    step = max(1, ROW_BUDGET // max(1, h * d))
    for i in range(0, r, step):
        xb = xs[i:i + step, None, :]
        plus, minus = xb + ws[None], xb - ws[None]
        part = None if counts is None else {k: np.zeros(plus.shape[:2], np.int64) for k in counts}
        diff = mp_alpha(np.abs(plus), gamma, halvings, part) - mp_alpha(np.abs(minus), gamma, halvings, part)
        acc = np.zeros_like(diff)
        for t in range(shifts.shape[1]):
            acc += signs[None, :, t].astype(np.int64) * (diff << shifts[None, :, t].astype(np.int64))
        if counts is not None:
            _count_terms(part, plus, minus, shifts, signs)
            for k in counts:
                counts[k][i:i + step] += part[k].sum(axis=1)
        y[i:i + step] = acc
    return y


def _count_terms(part: dict, plus: np.ndarray, minus: np.ndarray, shifts: np.ndarray, signs: np.ndarray) -> None:
    """|x ± w| of every term, then α - β and the shift-add gain, per (row, output)."""
    d = plus.shape[-1]
    part["add"] += 2 * d + (plus < 0).sum(axis=-1) + (minus < 0).sum(axis=-1)
    part["compare"] += 2 * d
    nz = signs != 0
    part["add"] += 1 + nz.sum(axis=1)
    part["compare"] += np.where(signs > 0, 1, 2).sum(axis=1)
    part["shift"] += (nz & (shifts != 0)).sum(axis=1)
