"""Recurrent op kinds: nn.rnn, nn.gru, nn.lstm (ONNX RNN/GRU/LSTM) and the spiking snn.ltc neuron layer.

    nn.rnn(x, w, r, b, h0?)          -> y, y_h        H_t = tanh(x_t Wᵀ + H_{t−1} Rᵀ + b_w + b_r)
    nn.gru(x, w, r, b, h0?)          -> y, y_h        ONNX GRU, gates (z, r, h), linear_before_reset
    nn.lstm(x, w, r, b, p, h0?, c0?) -> y, y_h, y_c   ONNX LSTM, gates (i, o, f, c), peepholes p
Shapes are ONNX's (see mpc.rnn.kernels): layout 0 is time-major x [T, N, I], y [T, D, N, H]; layout 1
is batch-first. Only the default activations (sigmoid gates, tanh cell) exist; the frontend rejects
others by name. The bias operand is always present (the frontend writes zeros when ONNX omits it),
so the optional operands are only the initial states.

    snn.ltc(x, w_in, w_rec, b, w_tau, b_tau, w_rho, b_rho) -> s   [T, N, I] -> [T, N, H] spikes
A layer of liquid time-constant spiking neurons with adaptive thresholds (B. Yin, F. Corradi,
S. M. Bohté, "Accurate online training of dynamical spiking neural networks through Forward
Propagation Through Time", Nature Machine Intelligence 2023). At step t, with state u (membrane),
b (threshold adaptation) and s (spikes), all zero before the first step:
    c_t    = x_t W_inᵀ + s_{t−1} W_recᵀ + b                 synaptic current (recurrent spikes included)
    1/τ_m  = σ([c_t, u_{t−1}] W_τᵀ + b_τ)                   input-dependent membrane rate
    ρ      = σ([c_t, b_{t−1}] W_ρᵀ + b_ρ)                   input-dependent adaptation decay
    b_t    = ρ b_{t−1} + (1 − ρ) s_{t−1};  θ_t = 0.1 + 1.8 b_t
    u_t    = u_{t−1} + (c_t − u_{t−1}) / τ_m;  s_t = [u_t ≥ θ_t];  u_t ← u_t (1 − s_t)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from mpc.ir.opdefs import InferError, define
from mpc.ir.ops_nn import FOLDABLE
from mpc.ir.ops_snn import STATEFUL
from mpc.ir.types import FLOATS
from mpc.rnn import kernels as K
from mpc.snn import ltc as L


class Direction(enum.Enum):
    """Which way a recurrent layer runs (ONNX `direction`)."""

    FORWARD = "forward"
    REVERSE = "reverse"
    BIDIRECTIONAL = "bidirectional"


@dataclass(frozen=True)
class RNNAttrs:
    hidden_size: int
    direction: Direction = Direction.FORWARD
    layout: int = 0
    linear_before_reset: bool = False


GATES = {"nn.rnn": 1, "nn.gru": 3, "nn.lstm": 4}


def _dim_eq(got: tuple, want: tuple, what: str) -> None:
    """InferError unless the shapes have the same rank and agree wherever both dims are numbers."""
    clash = any(isinstance(g, int) and isinstance(w, int) and g != w for g, w in zip(got, want))
    if len(got) != len(want) or clash:
        raise InferError(f"{what}: expected {list(want)}, got {list(got)}")


def _rnn_infer(kind: str):
    def infer(types, a: RNNAttrs):
        x, w, r = types[:3]
        if x.dtype not in FLOATS or any(t.dtype != x.dtype for t in types):
            raise InferError(f"operands must share one float dtype, got {', '.join(str(t.dtype) for t in types)}")
        if a.layout not in (0, 1) or a.hidden_size < 1:
            raise InferError(f"layout must be 0 or 1 and hidden_size >= 1, got {a.layout}, {a.hidden_size}")
        if (x.rank, w.rank, r.rank) != (3, 3, 3):
            raise InferError(f"x, w, r must have rank 3, got {x}, {w}, {r}")
        d, h, g = (2 if a.direction is Direction.BIDIRECTIONAL else 1), a.hidden_size, GATES[kind]
        t_len, n = (x.shape[0], x.shape[1]) if a.layout == 0 else (x.shape[1], x.shape[0])
        _dim_eq(w.shape, (d, g * h, x.shape[2]), f"w shape [D, {g}·H, I]")
        _dim_eq(r.shape, (d, g * h, h), f"r shape [D, {g}·H, H]")
        _dim_eq(types[3].shape, (d, 2 * g * h), f"b shape [D, {2 * g}·H]")
        state = (d, n, h) if a.layout == 0 else (n, d, h)
        first = 5 if kind == "nn.lstm" else 4
        if kind == "nn.lstm":
            _dim_eq(types[4].shape, (d, 3 * h), "p shape [D, 3·H]")
        for t in types[first:]:
            if t.rank != 3 or any(isinstance(u, int) and isinstance(v, int) and u != v
                                  for u, v in zip(t.shape, state)):
                raise InferError(f"initial state: expected shape {list(state)}, got {t}")
        y = (t_len, d, n, h) if a.layout == 0 else (n, t_len, d, h)
        return [x.with_shape(y)] + [x.with_shape(state)] * (2 if kind == "nn.lstm" else 1)
    return infer


def _rnn_kernel(kind: str):
    name = kind.removeprefix("nn.")

    def kernel(k, x, w, r, b, *rest):
        a = k.attrs
        p = rest[0] if kind == "nn.lstm" else None
        states = list(rest[1:] if kind == "nn.lstm" else rest) + [None, None]
        return K.rnn_run(name, x, w, r, b, states[0], states[1], p, a.layout, a.linear_before_reset,
                         a.direction is Direction.REVERSE)
    return kernel


_ROLES = {"nn.rnn": ("x", "w", "r", "b", "h0?"), "nn.gru": ("x", "w", "r", "b", "h0?"),
          "nn.lstm": ("x", "w", "r", "b", "p", "h0?", "c0?")}
_SUMMARY = {"nn.rnn": "Elman RNN layer, tanh (ONNX RNN): outputs y, y_h",
            "nn.gru": "GRU layer (ONNX GRU): outputs y, y_h",
            "nn.lstm": "LSTM layer with peepholes (ONNX LSTM): outputs y, y_h, y_c"}
for _kind, _roles in _ROLES.items():
    define(_kind, _roles, _SUMMARY[_kind], _rnn_infer(_kind), _rnn_kernel(_kind), RNNAttrs,
           results=3 if _kind == "nn.lstm" else 2, traits=FOLDABLE)


# -- snn.ltc ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LTCAttrs:
    theta0: float = 0.1
    beta: float = 1.8


def _ltc_infer(types, a: LTCAttrs):
    x, w_in, w_rec, b, w_tau, b_tau, w_rho, b_rho = types
    if x.dtype not in FLOATS or any(t.dtype != x.dtype for t in types):
        raise InferError("operands must share one float dtype")
    if x.rank != 3 or w_in.rank != 2:
        raise InferError(f"x must be [T, N, I] and w_in [H, I], got {x}, {w_in}")
    h = w_in.shape[0]
    for t, want, what in [(w_in, (h, x.shape[2]), "w_in [H, I]"), (w_rec, (h, h), "w_rec [H, H]"),
                          (b, (h,), "b [H]"), (w_tau, (h, 2 * h), "w_tau [H, 2·H]"), (b_tau, (h,), "b_tau [H]"),
                          (w_rho, (h, 2 * h), "w_rho [H, 2·H]"), (b_rho, (h,), "b_rho [H]")]:
        _dim_eq(t.shape, want, what)
    return [x.with_shape((x.shape[0], x.shape[1], h))]


define("snn.ltc", ("x", "w_in", "w_rec", "b", "w_tau", "b_tau", "w_rho", "b_rho"),
       "liquid time-constant spiking layer with adaptive threshold, [T, N, I] -> [T, N, H] spikes",
       _ltc_infer, lambda k, *arrays: L.ltc_run(*arrays, k.attrs.theta0, k.attrs.beta), LTCAttrs,
       traits=STATEFUL)

