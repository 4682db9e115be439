"""What the spiking conversion passes (lower-lif, lower-nlif) share: data-based normalization scales
and the weight rescaling that moves a scale from one layer's activations into the next synapse.

Data-based normalization (Diehl et al., "Fast-classifying, high-accuracy spiking deep networks
through weight and threshold balancing", IJCNN 2015; Rueckauer et al., "Conversion of
continuous-valued deep networks to efficient event-driven networks for image classification",
Front. Neurosci. 2017): λ of a ReLU layer is the maximum or a percentile of its activations over the
whole calibration set, computed exactly (np.percentile, linear interpolation, on every value of the
layer, zeros included), once per layer or once per channel (axis 1 of [N, C, ...]). A spike of a
neuron with scale λ stands for the activation value λ.
"""
from __future__ import annotations

import enum

import numpy as np

from mpc.errors import UnsupportedOp
from mpc.ir import Op


class Norm(enum.Enum):
    """Which statistic of a layer's calibration activations is its scale λ."""

    MAX = "max"
    P99_9 = "p99.9"
    P99_99 = "p99.99"


class Granularity(enum.Enum):
    """One λ per layer or one per channel."""

    LAYER = "layer"
    CHANNEL = "channel"


def _statistic(a: np.ndarray, norm: Norm, axis=None) -> np.ndarray:
    if norm is Norm.MAX:
        return np.max(a, axis=axis)
    return np.percentile(a, 99.9 if norm is Norm.P99_9 else 99.99, axis=axis)


def activation_scale(acts: np.ndarray, norm: Norm, granularity: Granularity) -> np.ndarray:
    """λ of one layer from its activations [N, C, ...]: shape [C] (a layer λ repeated per channel).

    A λ that is not positive (a channel silent at that percentile) falls back to the maximum, then to 1.
    """
    a = np.asarray(acts, np.float64)
    c = a.shape[1]
    if granularity is Granularity.LAYER:
        lam = np.full(c, _statistic(a.ravel(), norm))
        fallback = np.full(c, a.max())
    else:
        per = np.moveaxis(a, 1, 0).reshape(c, -1)
        lam, fallback = _statistic(per, norm, axis=1), per.max(1)
    lam = np.where(lam > 0, lam, fallback)
    return np.where(lam > 0, lam, 1.0)


def per_sample(lam: np.ndarray, shape: tuple) -> np.ndarray:
    """λ per channel broadcast to one sample's shape (C, ...)."""
    return np.broadcast_to(lam.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()


def channel_scale(s: np.ndarray, op: Op) -> np.ndarray:
    """The per-channel scale [C] of a per-sample scale (C, H, W); UnsupportedOp if it varies in space."""
    flat = s.reshape(s.shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        raise UnsupportedOp(op.kind, op.loc, "its input scale varies within a channel")
    return flat[:, 0]


def scale_inputs(op: Op, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The synapse weight with its inputs multiplied by their scale s (a matmul's rows, a conv's input channels)."""
    if op.kind == "nn.matmul":
        return (w.astype(np.float64) * s.reshape(-1)[:, None]).astype(w.dtype)
    sc = channel_scale(s, op)
    m, cg = w.shape[:2]
    group = op.attrs.group
    idx = (np.arange(m)[:, None] // (m // group)) * cg + np.arange(cg)[None, :]
    return (w.astype(np.float64) * sc[idx][:, :, None, None]).astype(w.dtype)


def pooled(s: np.ndarray, out_shape: tuple) -> np.ndarray:
    """A per-channel scale after a pool: the same per channel, on the pooled spatial shape."""
    return np.broadcast_to(s[:, :1, :1], out_shape).copy()
