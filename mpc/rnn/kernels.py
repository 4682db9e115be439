"""Reference NumPy kernels of the recurrent op kinds nn.rnn, nn.gru and nn.lstm (ONNX semantics).

This module imports only NumPy, so the NumPy backend embeds its source in model.py unchanged. Shapes
follow ONNX with layout 0: x [T, N, I], weights w [D, G·H, I], r [D, G·H, H], bias b [D, 2·G·H] (input
then recurrent bias), initial states [D, N, H]; outputs y [T, D, N, H] and the last states [D, N, H].
Layout 1 (batch first: x [N, T, I], y [N, T, D, H], states [N, D, H]) is transposed on entry and exit.
D = 2 for a bidirectional layer: direction 1 runs from the last step to the first. Gate orders are
ONNX's: GRU (z, r, h), LSTM (i, o, f, c) with peepholes p [D, 3·H] in the order (i, o, f).
"""

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _steps(t_len, reverse):
    return range(t_len - 1, -1, -1) if reverse else range(t_len)


def _rnn_dir(x, w, r, b, h, reverse, kind, lbr, c=None, p=None):
    """One direction: the outputs [T, N, H] and final state(s)."""
    hs = r.shape[1]
    g = r.shape[0] // hs
    wb, rb = b[:g * hs], b[g * hs:]
    xw = x @ w.T + wb                      # input projections of every step at once
    ys = np.zeros((x.shape[0], x.shape[1], hs), x.dtype)
    for t in _steps(x.shape[0], reverse):
        if kind == "rnn":
            h = np.tanh(xw[t] + h @ r.T + rb)
        elif kind == "gru":
            h = _gru_step(xw[t], h, r, rb, hs, lbr)
        else:
            h, c = _lstm_step(xw[t], h, c, r, rb, p, hs)
        ys[t] = h
    return ys, h, c


def _gru_step(xw, h, r, rb, hs, lbr):
    hr = h @ r[:2 * hs].T + rb[:2 * hs]
    z = _sigmoid(xw[:, :hs] + hr[:, :hs])
    rg = _sigmoid(xw[:, hs:2 * hs] + hr[:, hs:])
    if lbr:
        cand = np.tanh(xw[:, 2 * hs:] + rg * (h @ r[2 * hs:].T + rb[2 * hs:]))
    else:
        cand = np.tanh(xw[:, 2 * hs:] + (rg * h) @ r[2 * hs:].T + rb[2 * hs:])
    return (1 - z) * cand + z * h


def _lstm_step(xw, h, c, r, rb, p, hs):
    a = xw + h @ r.T + rb
    i = _sigmoid(a[:, :hs] + p[:hs] * c)
    f = _sigmoid(a[:, 2 * hs:3 * hs] + p[2 * hs:] * c)
    c = f * c + i * np.tanh(a[:, 3 * hs:])
    o = _sigmoid(a[:, hs:2 * hs] + p[hs:2 * hs] * c)
    return o * np.tanh(c), c


def rnn_run(kind, x, w, r, b, h0, c0, p, layout, lbr, reverse_only):
    """ONNX RNN/GRU/LSTM: (y, y_h) or (y, y_h, y_c); h0/c0/p may be None (zeros)."""
    if layout:
        x = np.swapaxes(x, 0, 1)
        h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
        c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
    dirs, hs = w.shape[0], r.shape[2]
    zeros = np.zeros((dirs, x.shape[1], hs), x.dtype)
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0
    p = np.zeros((dirs, 3 * hs), x.dtype) if p is None else p
    outs = [_rnn_dir(x, w[d], r[d], b[d], h0[d], reverse_only or d == 1, kind, lbr, c0[d], p[d])
            for d in range(dirs)]
    y = np.stack([o[0] for o in outs], axis=1).astype(x.dtype)
    yh = np.stack([o[1] for o in outs]).astype(x.dtype)
    yc = np.stack([o[2] for o in outs]).astype(x.dtype)
    if layout:
        y, yh, yc = np.transpose(y, (2, 0, 1, 3)), np.swapaxes(yh, 0, 1), np.swapaxes(yc, 0, 1)
    return (y, yh, yc) if kind == "lstm" else (y, yh)
