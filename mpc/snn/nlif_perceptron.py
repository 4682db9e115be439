"""The n-LIF perceptron: a single n-LIF readout neuron trained by the perceptron rule on spike times.

An n-LIF neuron read at time T computes V(T) = wᵀφ with φ_j = K(1 − e^{−(T − t_j)/τ}) for an input
spike at t_j <= T (0 for no spike): its decision V(T) >= V_th is a linear classifier in φ-space. The
perceptron rule (A. R. Nair et al.'s n-LIF learning algorithm; F. Rosenblatt 1958) updates on every
mistake w ← w + η·y·φ (labels y = ±1). When the data are separable in φ-space with margin γ by a
unit vector and ‖φ‖ <= R, it makes at most R²/γ² mistakes (Novikoff 1962), for any η > 0 with V_th = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def features(spike_times: np.ndarray, t_read: float, tau: float, k: float = 1.0) -> np.ndarray:
    """φ of spike times [N, D] read at t_read (NaN or a time after t_read: no spike, φ = 0)."""
    t = np.asarray(spike_times, np.float64)
    gap = t_read - t
    fired = np.isfinite(t) & (gap >= 0)
    return np.where(fired, k * -np.expm1(-np.where(fired, gap, 0) / tau), 0.0)


@dataclass
class PerceptronResult:
    """The trained weights and how training went: mistakes, epochs, the final margin and R."""

    w: np.ndarray
    mistakes: int
    epochs: int
    converged: bool
    margin: float
    radius: float


def train(spike_times: np.ndarray, labels: np.ndarray, t_read: float, tau: float, k: float = 1.0,
          eta: float = 1.0, max_epochs: int = 1000, v_th: float = 0.0) -> PerceptronResult:
    """Perceptron training of one n-LIF neuron on labelled spike-time patterns (labels ±1), in sample order."""
    phi = features(spike_times, t_read, tau, k)
    y = np.asarray(labels, np.float64)
    if phi.ndim != 2 or y.shape != (phi.shape[0],) or not np.all(np.abs(y) == 1):
        raise ValueError("expected spike times [N, D] and labels [N] of ±1")
    w = np.zeros(phi.shape[1])
    mistakes, epoch, converged = 0, 0, False
    while epoch < max_epochs and not converged:
        epoch += 1
        converged = True
        for i in range(phi.shape[0]):
            if y[i] * (phi[i] @ w - v_th) <= 0:
                w = w + eta * y[i] * phi[i]
                mistakes += 1
                converged = False
    norm = np.linalg.norm(w)
    margin = float(np.min(y * (phi @ w - v_th)) / norm) if norm > 0 else 0.0
    return PerceptronResult(w, mistakes, epoch, converged, margin, float(np.linalg.norm(phi, axis=1).max()))


def decide(w: np.ndarray, spike_times: np.ndarray, t_read: float, tau: float, k: float = 1.0,
           v_th: float = 0.0) -> np.ndarray:
    """±1 decisions V(T) >= V_th of the trained neuron."""
    return np.where(features(spike_times, t_read, tau, k) @ w >= v_th, 1, -1)
