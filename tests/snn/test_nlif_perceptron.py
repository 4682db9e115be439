"""The n-LIF perceptron on synthetic data separable in φ-space with a known margin: it converges
within Novikoff's R²/γ² mistake bound (γ, R computed here from the construction)."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.snn.nlif_perceptron import decide, features, train


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converges_within_the_mistake_bound(seed):
    rng = np.random.default_rng(seed)
    tau, t_read, d, gamma = 2.0, 5.0, 8, 0.05
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    phi = rng.random((4000, d)) * 0.95
    phi = phi[np.abs((phi - phi.mean(0)) @ u) >= gamma][:300]
    offset = phi.mean(0)
    # a threshold-free separator: augment with a constant input (a spike at time 0) carrying the offset
    aug = np.concatenate([phi, np.full((len(phi), 1), 1 - np.exp(-t_read / tau))], axis=1)
    u_aug = np.append(u, -(offset @ u) / (1 - np.exp(-t_read / tau)))
    labels = np.where(aug @ u_aug >= 0, 1, -1)
    margin_u = np.min(labels * (aug @ u_aug)) / np.linalg.norm(u_aug)
    radius = np.linalg.norm(aug, axis=1).max()
    times = t_read + tau * np.log1p(-aug)   # the spike times whose kernel values are `aug` (K = 1)
    np.testing.assert_allclose(features(times, t_read, tau), aug, atol=1e-12)
    res = train(times, labels, t_read, tau, eta=0.5)
    assert res.converged
    assert res.mistakes <= radius ** 2 / margin_u ** 2
    assert np.all(decide(res.w, times, t_read, tau) == labels)
    assert res.margin > 0 and res.radius == pytest.approx(radius)


def test_missing_and_late_spikes_have_no_effect():
    t = np.array([[np.nan, 6.0, 1.0]])
    np.testing.assert_allclose(features(t, 5.0, 1.0), [[0.0, 0.0, 1 - np.exp(-4.0)]])
