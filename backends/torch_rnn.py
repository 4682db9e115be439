"""Torch lowerings of nn.rnn / nn.gru / nn.lstm and snn.ltc (mpc/ir/ops_rnn.py), merged into torch_backend's table.

The forward computes what mpc.rnn.kernels and mpc.snn.ltc compute, step by step with torch ops, so
gradients flow through time (BPTT). The LTC spike uses the surrogate gradient of backends/torch_snn.py
(`with surrogate(...)`). `ltc_step` is public: mpc.snn.ltc_model builds a module that steps through time
with it (for FPTT).
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
from mpc.backends.torch_snn import spike


def _dir(x, w, r, b, h, c, p, reverse, kind, lbr):
    hs = r.shape[1]
    g = r.shape[0] // hs
    xw, rb = x @ w.T + b[:g * hs], b[g * hs:]
    ys = [None] * x.shape[0]
    for t in (range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])):
        if kind == "rnn":
            h = torch.tanh(xw[t] + h @ r.T + rb)
        elif kind == "gru":
            hr = h @ r[:2 * hs].T + rb[:2 * hs]
            z, rg = torch.sigmoid(xw[t, :, :hs] + hr[:, :hs]), torch.sigmoid(xw[t, :, hs:2 * hs] + hr[:, hs:])
            lin = rg * (h @ r[2 * hs:].T + rb[2 * hs:]) if lbr else (rg * h) @ r[2 * hs:].T + rb[2 * hs:]
            h = (1 - z) * torch.tanh(xw[t, :, 2 * hs:] + lin) + z * h
        else:
            a = xw[t] + h @ r.T + rb
            i = torch.sigmoid(a[:, :hs] + p[:hs] * c)
            f = torch.sigmoid(a[:, 2 * hs:3 * hs] + p[2 * hs:] * c)
            c = f * c + i * torch.tanh(a[:, 3 * hs:])
            h = torch.sigmoid(a[:, hs:2 * hs] + p[hs:2 * hs] * c) * torch.tanh(c)
        ys[t] = h
    return torch.stack(ys), h, c


def _rnn(kind: str):
    def lower(a, x, w, r, b, *rest):
        p = rest[0] if kind == "lstm" else None
        states = list(rest[1:] if kind == "lstm" else rest)
        if a.layout:
            x, states = x.transpose(0, 1), [s.transpose(0, 1) for s in states]
        zeros = x.new_zeros((w.shape[0], x.shape[1], r.shape[2]))
        h0, c0 = (states + [zeros, zeros])[:2]
        p = x.new_zeros((w.shape[0], 3 * r.shape[2])) if p is None else p
        outs = [_dir(x, w[d], r[d], b[d], h0[d], c0[d], p[d], a.direction.value == "reverse" or d == 1, kind,
                     a.linear_before_reset) for d in range(w.shape[0])]
        y, yh, yc = torch.stack([o[0] for o in outs], 1), torch.stack([o[1] for o in outs]), \
            torch.stack([o[2] for o in outs])
        if a.layout:
            y, yh, yc = y.permute(2, 0, 1, 3), yh.transpose(0, 1), yc.transpose(0, 1)
        return (y, yh, yc) if kind == "lstm" else (y, yh)
    return lower


def ltc_step(x_t, state, w_in, w_rec, b, w_tau, b_tau, w_rho, b_rho, theta0=0.1, beta=1.8):
    """One LTC step (see mpc.ir.ops_rnn): state (u, b_adapt, s) at t − 1 -> at t; spikes with a surrogate."""
    u, b_adapt, s = state
    c = x_t @ w_in.T + s @ w_rec.T + b
    rate = torch.sigmoid(torch.cat([c, u], 1) @ w_tau.T + b_tau)
    rho = torch.sigmoid(torch.cat([c, b_adapt], 1) @ w_rho.T + b_rho)
    b_adapt = rho * b_adapt + (1 - rho) * s
    u = u + (c - u) * rate
    s = spike(u - (theta0 + beta * b_adapt))
    return u * (1 - s), b_adapt, s


# Inside `carry(store)`, every snn.ltc layer starts from the state it ended with in the previous call (kept
# in `store` under its input weight), so a graph can be run one chunk of time steps at a time (GraphStepper).
_carry: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mpc_ltc_carry", default=None)


@contextlib.contextmanager
def carry(store: dict):
    """Inside the block, snn.ltc layers read and write their (u, b, s) state in `store`."""
    token = _carry.set(store)
    try:
        yield store
    finally:
        _carry.reset(token)


def _ltc(a, x, *weights):
    zeros = x.new_zeros((x.shape[1], weights[0].shape[0]))
    store = _carry.get()
    state = (zeros, zeros, zeros) if store is None else store.get(id(weights[0]), (zeros, zeros, zeros))
    out = []
    for t in range(x.shape[0]):
        state = ltc_step(x[t], state, *weights, a.theta0, a.beta)
        out.append(state[2])
    if store is not None:
        store[id(weights[0])] = state
    return torch.stack(out)


class GraphStepper:
    """A lowered graph whose one time-major input is fed one step at a time (for mpc.train.fptt): the state
    is the tuple of every snn.ltc layer's (u, b, s), in the order the layers first ran."""

    def __init__(self, module, input_name: str, output_name: str):
        self.module, self.input_name, self.output_name = module, input_name, output_name
        self.keys: list[int] = []

    def init_state(self, n: int):
        """No state yet: every layer starts at zero."""
        return ()

    def step(self, x_t: torch.Tensor, state):
        """Run the graph on one step [N, F]; (its output at that step, the new state)."""
        store = {k: tuple(state[3 * i:3 * i + 3]) for i, k in enumerate(self.keys)} if state else {}
        with carry(store):
            out = self.module({self.input_name: x_t.unsqueeze(0)})[self.output_name]
        self.keys += [k for k in store if k not in self.keys]
        return out[0], tuple(t for k in self.keys for t in store[k])


RNN_LOWERINGS = {"nn.rnn": _rnn("rnn"), "nn.gru": _rnn("gru"), "nn.lstm": _rnn("lstm"), "snn.ltc": _ltc}
