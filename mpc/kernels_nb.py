"""Compiled (numba) kernels for the NumPy backend's hot ops: conv2d, maxpool2d and matmul.

`conv2d_fused` runs a 2-D convolution with its epilogue (bias, an optional ReLU, an optional
max-pool) in one pass, threads over blocks of samples, and never builds im2col patches. A block of
up to LANES samples is interleaved first (sample index fastest: xb[c, (y*Wp + x)*B + s]), and a
stride-1 convolution is computed "full width" over the whole block: output pixel (i, j) of channel
o accumulates at p = (i*Wp + j)*B + s of a row of length L = ((OH-1)*Wp + OW)*B, so that every kernel
tap (c, kh, kw) is one long contiguous, vectorizable loop
`acc[o, p] += w[o, c, kh, kw] * xb[c, (kh*dh*Wp + kw*dw)*B + p]`; the columns j >= OW are computed
and thrown away in the epilogue. Taps of one kernel row are summed together and four output
channels share every input load, so each accumulator load/store carries KW * 4 multiply-adds. The
epilogue pools (2x2 windows as row maxima, then column pairs), applies ReLU and scatters the block
back to NCHW. Every output element sees the same operations in the same order whatever the block
size, so a sample's result does not depend on the batch it is in, nor on the thread count.
A strided convolution runs the same kernel after a polyphase rewrite (`_phase_plan`): its padded
input is split into one phase image per (row, column) offset modulo the stride, and the weights are
rearranged into a stride-1, dilation-1 kernel over those phase channels, with zero weights where a
tap falls on no phase. Both steps only move values, so the per-sample argument above holds for
strided convs as well. Dtypes other than float32/float64 fall back to the NumPy reference kernels
(`conv2d`, `maxpool2d` in mpc.kernels_np).

The NumPy backend embeds this module's source in model.py as text, with the NumPy fallbacks in
place of the `from mpc...` import, so the emitted file stands alone; model.py loads that text as a
module kept in the user cache (mpc.kernel_cache), where numba caches each kernel after its first
compile for every later model.py with the same kernels.
"""
import functools

import numpy as np
from numba import get_num_threads, njit, prange

from mpc.kernels_np import conv2d, maxpool2d, pool_out_size

LANES = 16  # most samples a conv block interleaves
BLOCK_BYTES = 1 << 21  # a block's interleaved input and accumulators should stay in cache


@njit(cache=True, inline="always")
def _shifted(xc, r, d, n, k):
    """The k views xc[r + t*d : r + t*d + n] (t < k) of one kernel row, as a tuple (k is 3 or 5)."""
    if k == 3:
        return xc[r:r + n], xc[r + d:r + d + n], xc[r + 2 * d:r + 2 * d + n]
    return (xc[r:r + n], xc[r + d:r + d + n], xc[r + 2 * d:r + 2 * d + n], xc[r + 3 * d:r + 3 * d + n],
            xc[r + 4 * d:r + 4 * d + n])


@njit(cache=True, inline="always")
def _row_taps4(a0, a1, a2, a3, xc, r, d, wr, o, n):
    """a_q[p] += sum_k wr[o+q, k] * xc[r + k*d + p] for p < n, q < 4 (one kernel row)."""
    kw = wr.shape[1]
    if kw == 3:
        x0, x1, x2 = _shifted(xc, r, d, n, 3)
        p0, p1, p2 = wr[o, 0], wr[o, 1], wr[o, 2]
        q0, q1, q2 = wr[o + 1, 0], wr[o + 1, 1], wr[o + 1, 2]
        s0, s1, s2 = wr[o + 2, 0], wr[o + 2, 1], wr[o + 2, 2]
        t0, t1, t2 = wr[o + 3, 0], wr[o + 3, 1], wr[o + 3, 2]
        for p in range(n):
            v0 = x0[p]
            v1 = x1[p]
            v2 = x2[p]
            a0[p] += p0 * v0 + p1 * v1 + p2 * v2
            a1[p] += q0 * v0 + q1 * v1 + q2 * v2
            a2[p] += s0 * v0 + s1 * v1 + s2 * v2
            a3[p] += t0 * v0 + t1 * v1 + t2 * v2
    elif kw == 5:
        x0, x1, x2, x3, x4 = _shifted(xc, r, d, n, 5)
        p0, p1, p2, p3, p4 = wr[o, 0], wr[o, 1], wr[o, 2], wr[o, 3], wr[o, 4]
        q0, q1, q2, q3, q4 = wr[o + 1, 0], wr[o + 1, 1], wr[o + 1, 2], wr[o + 1, 3], wr[o + 1, 4]
        s0, s1, s2, s3, s4 = wr[o + 2, 0], wr[o + 2, 1], wr[o + 2, 2], wr[o + 2, 3], wr[o + 2, 4]
        t0, t1, t2, t3, t4 = wr[o + 3, 0], wr[o + 3, 1], wr[o + 3, 2], wr[o + 3, 3], wr[o + 3, 4]
        for p in range(n):
            v0 = x0[p]
            v1 = x1[p]
            v2 = x2[p]
            v3 = x3[p]
            v4 = x4[p]
            a0[p] += p0 * v0 + p1 * v1 + p2 * v2 + p3 * v3 + p4 * v4
            a1[p] += q0 * v0 + q1 * v1 + q2 * v2 + q3 * v3 + q4 * v4
            a2[p] += s0 * v0 + s1 * v1 + s2 * v2 + s3 * v3 + s4 * v4
            a3[p] += t0 * v0 + t1 * v1 + t2 * v2 + t3 * v3 + t4 * v4
    else:  # taps two at a time (2-wide rows come from strided convs), then one
        k = 0
        while k + 2 <= kw:
            _pair_taps4(a0, a1, a2, a3, xc, r + k * d, d, wr, o, n, k)
            k += 2
        if k < kw:
            xs = xc[r + k * d:r + k * d + n]
            e0, e1, e2, e3 = wr[o, k], wr[o + 1, k], wr[o + 2, k], wr[o + 3, k]
            for p in range(n):
                v = xs[p]
                a0[p] += e0 * v
                a1[p] += e1 * v
                a2[p] += e2 * v
                a3[p] += e3 * v


@njit(cache=True, inline="always")
def _pair_taps4(a0, a1, a2, a3, xc, r, d, wr, o, n, k):
    """a_q[p] += wr[o+q, k] * xc[r + p] + wr[o+q, k+1] * xc[r + d + p] for p < n, q < 4."""
    x0 = xc[r:r + n]
    x1 = xc[r + d:r + d + n]
    p0, p1 = wr[o, k], wr[o, k + 1]
    q0, q1 = wr[o + 1, k], wr[o + 1, k + 1]
    s0, s1 = wr[o + 2, k], wr[o + 2, k + 1]
    t0, t1 = wr[o + 3, k], wr[o + 3, k + 1]
    for p in range(n):
        v0 = x0[p]
        v1 = x1[p]
        a0[p] += p0 * v0 + p1 * v1
        a1[p] += q0 * v0 + q1 * v1
        a2[p] += s0 * v0 + s1 * v1
        a3[p] += t0 * v0 + t1 * v1


@njit(cache=True, inline="always")
def _row_taps1(a0, xc, r, d, wr, o, n):
    """a0[p] += sum_k wr[o, k] * xc[r + k*d + p] for p < n (one kernel row, one channel)."""
    kw = wr.shape[1]
    if kw == 3:
        x0, x1, x2 = _shifted(xc, r, d, n, 3)
        p0, p1, p2 = wr[o, 0], wr[o, 1], wr[o, 2]
        for p in range(n):
            a0[p] += p0 * x0[p] + p1 * x1[p] + p2 * x2[p]
    elif kw == 5:
        x0, x1, x2, x3, x4 = _shifted(xc, r, d, n, 5)
        p0, p1, p2, p3, p4 = wr[o, 0], wr[o, 1], wr[o, 2], wr[o, 3], wr[o, 4]
        for p in range(n):
            a0[p] += p0 * x0[p] + p1 * x1[p] + p2 * x2[p] + p3 * x3[p] + p4 * x4[p]
    else:  # taps two at a time, then one
        k = 0
        while k + 2 <= kw:
            x0 = xc[r + k * d:r + k * d + n]
            x1 = xc[r + (k + 1) * d:r + (k + 1) * d + n]
            p0, p1 = wr[o, k], wr[o, k + 1]
            for p in range(n):
                a0[p] += p0 * x0[p] + p1 * x1[p]
            k += 2
        if k < kw:
            xs = xc[r + k * d:r + k * d + n]
            e0 = wr[o, k]
            for p in range(n):
                a0[p] += e0 * xs[p]


@njit(cache=True, inline="always")
def _quad_taps4(a0, a1, a2, a3, xc, r, rs, d, w0, w1, o, n):
    """A 2x2 block of taps: a_q[p] += the taps (0, 0), (0, 1) of kernel row w0 and of row w1 (read
    rs further on) for channels o+q, q < 4; the phase kernels of stride-2 convs are 2 wide."""
    x0 = xc[r:r + n]
    x1 = xc[r + d:r + d + n]
    x2 = xc[r + rs:r + rs + n]
    x3 = xc[r + rs + d:r + rs + d + n]
    p0, p1, p2, p3 = w0[o, 0], w0[o, 1], w1[o, 0], w1[o, 1]
    q0, q1, q2, q3 = w0[o + 1, 0], w0[o + 1, 1], w1[o + 1, 0], w1[o + 1, 1]
    s0, s1, s2, s3 = w0[o + 2, 0], w0[o + 2, 1], w1[o + 2, 0], w1[o + 2, 1]
    t0, t1, t2, t3 = w0[o + 3, 0], w0[o + 3, 1], w1[o + 3, 0], w1[o + 3, 1]
    for p in range(n):
        v0 = x0[p]
        v1 = x1[p]
        v2 = x2[p]
        v3 = x3[p]
        a0[p] += p0 * v0 + p1 * v1 + p2 * v2 + p3 * v3
        a1[p] += q0 * v0 + q1 * v1 + q2 * v2 + q3 * v3
        a2[p] += s0 * v0 + s1 * v1 + s2 * v2 + s3 * v3
        a3[p] += t0 * v0 + t1 * v1 + t2 * v2 + t3 * v3


@njit(cache=True, inline="always")
def _channel_taps(acc, xc, w, cc, o0, end, rs, d, n):
    """acc[o] += every tap of input channel xc (weights w[o, cc]) for o0 <= o < end; rs and d are
    the distances in xc between kernel rows and between kernel columns.

    Four output channels at a time share each input load; 2-wide kernels take two rows at once,
    so that each accumulator pass carries four taps. For every accumulator the taps come in the
    same order (row by row, left to right), whatever the batch.
    """
    kh_, kw_ = w.shape[2], w.shape[3]
    o = o0
    while o + 4 <= end:
        k = 0
        while kw_ == 2 and k + 2 <= kh_:
            _quad_taps4(acc[o], acc[o + 1], acc[o + 2], acc[o + 3], xc, k * rs, rs, d, w[:, cc, k, :],
                        w[:, cc, k + 1, :], o, n)
            k += 2
        while k < kh_:
            _row_taps4(acc[o], acc[o + 1], acc[o + 2], acc[o + 3], xc, k * rs, d, w[:, cc, k, :], o, n)
            k += 1
        o += 4
    while o < end:
        for k in range(kh_):
            _row_taps1(acc[o], xc, k * rs, d, w[:, cc, k, :], o, n)
        o += 1


@njit(cache=True, inline="always")
def _pool_rows(src, wp, oh, ow, dst, pk, ps, pp, pd, relu, inside, tmp):
    """dst[i, j] = max over the pool window of src[y*wp + x] (y < oh, x < ow), then ReLU.

    Padding never wins: taps outside [0, oh) x [0, ow) are skipped (`inside` says that no window
    leaves the input, which drops the bounds checks). Rows are reduced first (contiguous,
    vectorizable), then the columns of the reduced row.
    """
    ph, pw = dst.shape
    if inside and pk[0] == 2 and pk[1] == 2 and pd[0] == 1 and pd[1] == 1:
        s0 = ps[0]
        s1 = ps[1]
        for i in range(ph):
            for j in range(pw):
                r = i * s0 * wp + j * s1
                v = max(max(src[r], src[r + 1]), max(src[r + wp], src[r + wp + 1]))
                dst[i, j] = v if (v > 0 or not relu) else 0
        return
    for i in range(ph):
        y0 = i * ps[0] - pp[0]
        first = True
        for ki in range(pk[0]):
            y = y0 + ki * pd[0]
            if 0 <= y < oh:
                row = src[y * wp:y * wp + ow]
                if first:
                    tmp[:] = row
                    first = False
                else:
                    for x in range(ow):
                        tmp[x] = max(tmp[x], row[x])
        for j in range(pw):
            x0 = j * ps[1] - pp[1]
            m = -np.inf
            for kj in range(pk[1]):
                x = x0 + kj * pd[1]
                if 0 <= x < ow:
                    m = max(m, tmp[x])
            dst[i, j] = max(m, 0) if relu else m


@njit(cache=True, inline="always")
def _gather_lanes(x, s0, lanes, xb):
    """xb[c, p*lanes + l] = x[s0 + l, c].flat[p] for l < lanes: a block of samples, interleaved."""
    c_, hp, wp = x.shape[1:]
    hw = hp * wp
    for l in range(lanes):
        for c in range(c_):
            src = x[s0 + l, c].reshape(hw)
            dst = xb[c]
            for p in range(hw):
                dst[p * lanes + l] = src[p]


@njit(cache=True, inline="always")
def _scatter_lanes(tmp, out, s0, lanes):
    """out[s0 + l].flat[q] = tmp[q, l] for l < lanes: the block's results back to NCHW."""
    q_ = tmp.shape[0]
    for l in range(lanes):
        dst = out[s0 + l].reshape(q_)
        for q in range(q_):
            dst[q] = tmp[q, l]


@njit(parallel=True, cache=True)
def _conv2d_s1(x, w, b, dilations, group, relu, pool, pk, ps, pp, pd, inside, lanes, out):
    """Stride-1 grouped conv of the padded x (N,C,H,W) with w (M, C/g, KH, KW).

    Blocks of `lanes` samples are interleaved (sample index fastest), so a tap's loop runs over
    the whole block at once; each output element sees the same operations in the same order
    whatever the block size, hence results do not depend on it (or on the thread count). The
    parallel loop only hands out blocks to a plain compiled function: with the whole body inside
    the prange, numba's parallel analysis made the first call's compile 16-20 s, not 13-15 s.
    """
    for blk in prange((x.shape[0] + lanes - 1) // lanes):
        _conv_block(x, w, b, dilations, group, relu, pool, pk, ps, pp, pd, inside, blk * lanes,
                    min(lanes, x.shape[0] - blk * lanes), out)


@njit(cache=True, fastmath={"contract"})
def _conv_block(x, w, b, dilations, group, relu, pool, pk, ps, pp, pd, inside, s0, nl, out):
    """_conv2d_s1 for the block of samples s0 .. s0+nl-1."""
    c_, hp, wp = x.shape[1:]
    m_, cg, kh_, kw_ = w.shape
    dh, dw = dilations
    oh = hp - (kh_ - 1) * dh
    ow = wp - (kw_ - 1) * dw
    mg = m_ // group
    zero = np.zeros(1, x.dtype)[0]
    ph = out.shape[2]
    pw = out.shape[3]
    quad = pool and inside and pk[0] == 2 and pk[1] == 2 and pd[0] == 1 and pd[1] == 1
    # positions per accumulator row, rounded up to whole 16-wide vectors so that no tap loop has a
    # scalar remainder (the extra positions read the zeroed tail of xb and are never used)
    n = -(-((oh - 1) * wp + ow) * nl // 16) * 16
    xb = np.empty((c_, hp * wp * nl + 16), x.dtype)
    xb[:, hp * wp * nl:] = 0
    _gather_lanes(x, s0, nl, xb)
    acc = np.empty((m_, n), x.dtype)
    for o in range(m_):
        acc[o, :] = b[o]
    for g in range(group):
        for cc in range(cg):
            _channel_taps(acc, xb[g * cg + cc], w, cc, g * mg, (g + 1) * mg, dh * wp * nl, dw * nl, n)
    if pool and not quad:  # any other pool: one sample at a time, on strided views
        tmp = np.empty(ow, x.dtype)
        for l in range(nl):
            for o in range(m_):
                _pool_rows(acc[o, l::nl], wp, oh, ow, out[s0 + l, o], pk, ps, pp, pd, relu, inside, tmp)
        return
    res = np.empty((m_ * ph * pw, nl), x.dtype)
    if quad:  # 2x2 windows inside the map: max of two rows, then of column pairs
        rm = np.empty(ow * nl, x.dtype)
        for o in range(m_):
            a = acc[o]
            for i in range(ph):
                y = i * ps[0] * wp * nl
                u = a[y:y + ow * nl]
                v = a[y + wp * nl:y + (wp + ow) * nl]
                for p in range(ow * nl):
                    e = u[p]
                    f = v[p]
                    rm[p] = max(e, f)
                for j in range(pw):
                    c0 = j * ps[1] * nl
                    e0 = rm[c0:c0 + nl]
                    f0 = rm[c0 + nl:c0 + 2 * nl]
                    dst = res[(o * ph + i) * pw + j]
                    for l in range(nl):
                        e = e0[l]
                        f = f0[l]
                        e = max(e, f)
                        dst[l] = e if (e > 0 or not relu) else zero
    else:
        for o in range(m_):
            a = acc[o]
            for i in range(oh):
                src = a[i * wp * nl:(i * wp + ow) * nl]
                dst = res[(o * oh + i) * ow:(o * oh + i + 1) * ow].reshape(ow * nl)
                if relu:
                    for p in range(ow * nl):
                        e = src[p]
                        dst[p] = e if e > 0 else zero
                else:
                    for p in range(ow * nl):
                        dst[p] = src[p]
    _scatter_lanes(res, out, s0, nl)


@njit(cache=True, inline="always")
def _dot4(o, w, k, a0, a1, a2, a3):
    """o[j] += a0*w[k, j] + a1*w[k+1, j] + a2*w[k+2, j] + a3*w[k+3, j] (one row, four k)."""
    w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
    for j in range(o.shape[0]):
        o[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j]


@njit(parallel=True, cache=True, fastmath={"contract"})
def _matmul_rows(x, w, out):
    """out = x @ w for 2-D arrays, in blocks of four rows that share every load of w.

    k is taken four at a time (then one at a time), in the same order for every row, so a row's
    result does not depend on the block it falls in.
    """
    n_, k_ = x.shape
    m_ = w.shape[1]
    k4 = k_ - k_ % 4
    for blk in prange((n_ + 3) // 4):
        i0 = blk * 4
        ni = min(4, n_ - i0)
        for i in range(i0, i0 + ni):
            out[i, :] = 0
        if ni == 4:
            o0, o1, o2, o3 = out[i0], out[i0 + 1], out[i0 + 2], out[i0 + 3]
            for k in range(0, k4, 4):
                w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
                p0, p1, p2, p3 = x[i0, k], x[i0, k + 1], x[i0, k + 2], x[i0, k + 3]
                q0, q1, q2, q3 = x[i0 + 1, k], x[i0 + 1, k + 1], x[i0 + 1, k + 2], x[i0 + 1, k + 3]
                s0, s1, s2, s3 = x[i0 + 2, k], x[i0 + 2, k + 1], x[i0 + 2, k + 2], x[i0 + 2, k + 3]
                t0, t1, t2, t3 = x[i0 + 3, k], x[i0 + 3, k + 1], x[i0 + 3, k + 2], x[i0 + 3, k + 3]
                for j in range(m_):
                    e0 = w0[j]
                    e1 = w1[j]
                    e2 = w2[j]
                    e3 = w3[j]
                    o0[j] += p0 * e0 + p1 * e1 + p2 * e2 + p3 * e3
                    o1[j] += q0 * e0 + q1 * e1 + q2 * e2 + q3 * e3
                    o2[j] += s0 * e0 + s1 * e1 + s2 * e2 + s3 * e3
                    o3[j] += t0 * e0 + t1 * e1 + t2 * e2 + t3 * e3
        else:
            for i in range(i0, i0 + ni):
                for k in range(0, k4, 4):
                    _dot4(out[i], w, k, x[i, k], x[i, k + 1], x[i, k + 2], x[i, k + 3])
        for i in range(i0, i0 + ni):
            o = out[i]
            for k in range(k4, k_):
                v = x[i, k]
                wk = w[k]
                for j in range(m_):
                    o[j] += v * wk[j]


@njit(parallel=True, cache=True)
def _maxpool2d(x, pk, ps, pp, pd, inside, out):
    """Max pooling of x (N,C,H,W) into out (N,C,OH,OW); padding never wins."""
    n_, c_, h_, w_ = x.shape
    for t in prange(n_ * c_):
        s = t // c_
        c = t % c_
        tmp = np.empty(w_, x.dtype)
        _pool_rows(x[s, c].reshape(h_ * w_), w_, h_, w_, out[s, c], pk, ps, pp, pd, False, inside, tmp)


def _pool_geometry(h, w, kernel, strides, pads, dilations, ceil_mode):
    """Pooled size (ph, pw) of an h x w map, and the kernel's (pk, ps, pp, pd, inside) arguments."""
    ph = pool_out_size(h, kernel[0], strides[0], pads[0], pads[2], dilations[0], ceil_mode)
    pw = pool_out_size(w, kernel[1], strides[1], pads[1], pads[3], dilations[1], ceil_mode)
    inside = not any(pads) and all((o - 1) * s + (k - 1) * d < n for o, s, k, d, n in
                                   zip((ph, pw), strides, kernel, dilations, (h, w)))
    return ph, pw, ((int(kernel[0]), int(kernel[1])), (int(strides[0]), int(strides[1])),
                    (int(pads[0]), int(pads[1])), (int(dilations[0]), int(dilations[1])), inside)


def _compiled_ok(x, w=None, ndim=4):
    """Whether the compiled kernels take these arrays (float32/float64 of one dtype, right rank)."""
    ok = x.dtype in (np.float32, np.float64) and x.ndim == ndim
    return ok and (w is None or (w.dtype == x.dtype and w.ndim == ndim))


@functools.lru_cache(maxsize=256)
def _conv_plan(chw, wshape, pads, dilations, pool, itemsize):
    """Output size (ph, pw), the pool's kernel arguments and a sample's working-set bytes for one
    conv geometry (computed once per geometry: model.py calls the same layers again and again)."""
    m, _, kh, kw = wshape
    c, h, w = chw
    oh = pool_out_size(h, kh, 1, pads[0], pads[2], dilations[0], False)
    ow = pool_out_size(w, kw, 1, pads[1], pads[3], dilations[1], False)
    if pool is None:
        ph, pw, geometry = oh, ow, ((1, 1), (1, 1), (0, 0), (1, 1), True)
    else:
        ph, pw, geometry = _pool_geometry(oh, ow, *pool)
    hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
    return ph, pw, geometry, (m * ((oh - 1) * wp + ow) + c * hp * wp) * itemsize


@functools.lru_cache(maxsize=256)
def _phase_plan(wshape, strides, dilations):
    """The polyphase rewrite of a strided conv's weights, computed once per geometry.

    With strides (sh, sw) and dilations (dh, dw), tap (kh, kw) reads padded-input row
    i*sh + kh*dh = (i + qh)*sh + a, i.e. row i + qh of the row phase a = kh*dh mod sh (likewise for
    columns). Returns the row phases and column phases that some tap reads, the stride-1 kernel
    size (KH', KW') = ((KH-1)*dh // sh + 1, (KW-1)*dw // sw + 1), and `src`: for every weight of the
    rearranged (M, nphases*C/g, KH', KW') kernel, the flat index into w[o] (C/g*KH*KW of them) of
    the weight it copies, or C/g*KH*KW (an appended zero) where no tap lands. Phase channels are
    ordered (group, row phase, column phase, channel), so that each group's channels stay together.
    """
    _, cg, kh_, kw_ = wshape
    (sh, sw), (dh, dw) = strides, dilations
    rows = tuple(sorted({k * dh % sh for k in range(kh_)}))
    cols = tuple(sorted({k * dw % sw for k in range(kw_)}))
    kh2, kw2 = (kh_ - 1) * dh // sh + 1, (kw_ - 1) * dw // sw + 1
    src = np.full((len(rows), len(cols), cg, kh2, kw2), cg * kh_ * kw_, np.intp)
    cc = np.arange(cg)
    for kh in range(kh_):
        for kw in range(kw_):
            a, b = rows.index(kh * dh % sh), cols.index(kw * dw % sw)
            src[a, b, :, kh * dh // sh, kw * dw // sw] = (cc * kh_ + kh) * kw_ + kw
    return rows, cols, kh2, kw2, src.reshape(len(rows) * len(cols) * cg, kh2, kw2)


def _phases(x, strides, pads, rows, cols, hq, wq, group):
    """The phase images of the padded x: channel (g, a, b, c) at (y, x) holds
    xpad[g*C/g + c, y*sh + rows[a], x*sw + cols[b]], hq x wq of them, zero past the input."""
    n, c, h, w = x.shape
    sh, sw = strides
    out = np.zeros((n, group, len(rows), len(cols), c // group, hq, wq), x.dtype)
    for ia, a in enumerate(rows):
        y0 = -(-(pads[0] - a) // sh) if a < pads[0] else 0  # first phase row inside the input
        y1 = min(hq, (h + pads[0] - a + sh - 1) // sh)      # one past the last
        for ib, b in enumerate(cols):
            x0 = -(-(pads[1] - b) // sw) if b < pads[1] else 0
            x1 = min(wq, (w + pads[1] - b + sw - 1) // sw)
            if y1 <= y0 or x1 <= x0:
                continue
            v = x[:, :, y0 * sh + a - pads[0]:(y1 - 1) * sh + a - pads[0] + 1:sh,
                  x0 * sw + b - pads[1]:(x1 - 1) * sw + b - pads[1] + 1:sw]
            out[:, :, ia, ib, :, y0:y1, x0:x1] = v.reshape(n, group, c // group, y1 - y0, x1 - x0)
    return out.reshape(n, -1, hq, wq)


def _strided_as_stride1(x, w, strides, pads, dilations, group):
    """A strided conv's (phase images, rearranged weights): a stride-1 conv of these, without
    padding or dilation, gives exactly the strided conv's OH x OW output (see `_phase_plan`)."""
    rows, cols, kh2, kw2, src = _phase_plan(w.shape, tuple(strides), tuple(dilations))
    m, cg, kh_, kw_ = w.shape
    oh = pool_out_size(x.shape[2], kh_, strides[0], pads[0], pads[2], dilations[0], False)
    ow = pool_out_size(x.shape[3], kw_, strides[1], pads[1], pads[3], dilations[1], False)
    flat = np.concatenate([w.reshape(m, cg * kh_ * kw_), np.zeros((m, 1), w.dtype)], axis=1)
    return _phases(x, strides, pads, rows, cols, oh + kh2 - 1, ow + kw2 - 1, group), flat[:, src]


def conv2d_fused(x, w, b, strides, pads, dilations, group, relu=False, pool=None, lanes=None):
    """ONNX Conv (+ ReLU) (+ MaxPool given as (kernel, strides, pads, dilations, ceil_mode)).

    Float convolutions run the compiled kernel, other dtypes the NumPy reference. A strided conv
    first becomes a stride-1 conv over phase images (`_strided_as_stride1`); its weights for taps
    that fall on no phase are zeros, which add exact zeros (0 * v = 0 for finite v: model.py
    refuses NaN/inf inputs, and finite activations keep these products zero).
    `lanes` (samples per interleaved block) defaults to at most LANES, few enough that a block
    stays within BLOCK_BYTES and every thread gets a block, rounded down to a power of two; it
    changes the speed, never the results.
    """
    if not _compiled_ok(x, w) or x.shape[0] == 0:
        y = conv2d(x, w, b, strides, pads, dilations, group)
        y = np.maximum(y, y.dtype.type(0)) if relu else y
        return maxpool2d(y, *pool) if pool is not None else y
    if tuple(strides) != (1, 1):
        x, w = _strided_as_stride1(x, w, strides, pads, dilations, group)
        pads, dilations = (0, 0, 0, 0), (1, 1)
    ph, pw, geometry, per_sample = _conv_plan(x.shape[1:], w.shape, tuple(pads), tuple(dilations), pool,
                                              x.itemsize)
    bias = np.zeros(w.shape[0], x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    out = np.empty((x.shape[0], w.shape[0], ph, pw), x.dtype)
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    if lanes is None:
        lanes = max(1, min(LANES, BLOCK_BYTES // per_sample, -(-x.shape[0] // get_num_threads())))
        lanes = 1 << (lanes.bit_length() - 1)  # a power of two keeps the block's loops aligned
    args = (np.ascontiguousarray(x), np.ascontiguousarray(w), bias, (int(dilations[0]), int(dilations[1])),
            int(group), bool(relu), pool is not None, *geometry)
    if x.shape[0] <= lanes:  # one block: run it on this thread, without waking the thread pool
        _conv_block(*args, 0, x.shape[0], out)
    else:
        _conv2d_s1(*args, int(lanes), out)
    return out


def maxpool2d_fast(x, kernel, strides, pads, dilations, ceil_mode):
    """ONNX MaxPool (2-D): the compiled kernel for float inputs, else the NumPy reference."""
    if not _compiled_ok(x) or x.shape[0] * x.shape[1] == 0:
        return maxpool2d(x, kernel, strides, pads, dilations, ceil_mode)
    oh, ow, geometry = _pool_geometry(x.shape[2], x.shape[3], kernel, strides, pads, dilations, ceil_mode)
    out = np.empty(x.shape[:2] + (oh, ow), x.dtype)
    _maxpool2d(np.ascontiguousarray(x), *geometry, out)
    return out


def matmul_fast(x, w):
    """x @ w on numba's threads for 2-D float operands (else np.matmul).

    A model that runs its convolutions on numba's thread pool runs its dense layers there too:
    mixing in BLAS's own pool oversubscribes the cores, and the two pools' spinning threads then
    stall each other for whole scheduler ticks.
    """
    if not _compiled_ok(x, w, ndim=2) or x.shape[0] * w.shape[1] == 0:
        return np.matmul(x, w)
    out = np.empty((x.shape[0], w.shape[1]), x.dtype)
    _matmul_rows(np.ascontiguousarray(x), np.ascontiguousarray(w), out)
    return out
