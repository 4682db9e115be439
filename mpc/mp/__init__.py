"""Margin propagation (MP): the multiplierless approximation of a dot product, and its kernels.

`mpc.mp.mp_dot(x, w, gamma, method=...)` is the public kernel API (mpc.mp.kernels); the torch autograd
function for training is in mpc.mp.autograd (imports torch).
"""
from mpc.mp.kernels import METHODS, mp_alpha, mp_dot, mp_dot_bwd, mp_dot_fwd

__all__ = ["METHODS", "mp_alpha", "mp_dot", "mp_dot_bwd", "mp_dot_fwd"]
