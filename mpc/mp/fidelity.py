"""Fidelity of a converted (MP) network to its source, neuron by neuron.

A layer's "neurons" are its output features: the last axis of a dense activation (N, .., H), the
channel axis of a feature map (N, C, H, W). Each neuron's Pearson correlation between the source and
the converted activation is taken over every sample (and every position of a feature map), as in
the per-neuron figure of Kotak's thesis on margin-propagation networks. Activations arrive in
slices; the centred sums of each neuron are merged exactly (Chan et al.'s pairwise update), so the
result does not depend on how the data was sliced.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def neuron_rows(a: np.ndarray) -> np.ndarray:
    """An activation as (rows, neurons) float64: channels of a rank-4 map, else the last axis."""
    a = np.asarray(a, np.float64)
    if a.ndim == 4:
        return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])
    if a.ndim <= 1:
        return a.reshape(-1, 1)
    return a.reshape(-1, a.shape[-1])


class NeuronPearson:
    """Per-neuron Pearson correlation of source vs converted activations, added slice by slice."""

    def __init__(self):
        self.n = 0
        self.mean_a = self.mean_b = self.m_aa = self.m_bb = self.m_ab = None

    def add(self, a: np.ndarray, b: np.ndarray) -> NeuronPearson:
        """Add one slice of source (a) and converted (b) activations of the same shape; returns self."""
        if np.shape(a) != np.shape(b) or np.size(a) == 0:
            return self
        ra, rb = neuron_rows(a), neuron_rows(b)
        if self.n and ra.shape[1] != self.mean_a.shape[0]:
            return self
        k = ra.shape[0]
        ma, mb = ra.mean(0), rb.mean(0)
        da, db = ra - ma, rb - mb
        if not self.n:
            self.n, self.mean_a, self.mean_b = k, ma, mb
            self.m_aa, self.m_bb, self.m_ab = (da * da).sum(0), (db * db).sum(0), (da * db).sum(0)
            return self
        n, total = self.n, self.n + k
        ea, eb = ma - self.mean_a, mb - self.mean_b
        self.m_aa = self.m_aa + (da * da).sum(0) + ea * ea * n * k / total
        self.m_bb = self.m_bb + (db * db).sum(0) + eb * eb * n * k / total
        self.m_ab = self.m_ab + (da * db).sum(0) + ea * eb * n * k / total
        self.mean_a = self.mean_a + ea * k / total
        self.mean_b = self.mean_b + eb * k / total
        self.n = total
        return self

    def values(self) -> np.ndarray:
        """Each neuron's correlation; NaN where either side is constant (undefined)."""
        if not self.n:
            return np.zeros(0)
        den = np.sqrt(self.m_aa * self.m_bb)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, self.m_ab / np.where(den > 0, den, 1.0), np.nan)
        return np.clip(r, -1.0, 1.0)

    def summary(self) -> dict | None:
        """min, 5th percentile and median over neurons with a defined correlation, and the counts."""
        r = self.values()
        ok = r[np.isfinite(r)]
        if ok.size == 0:
            return None
        return {"min": float(ok.min()), "p5": float(np.percentile(ok, 5)), "median": float(np.median(ok)),
                "neurons": int(r.size), "undefined": int(r.size - ok.size)}


def write_plots(layers: list[dict], neurons: dict[str, np.ndarray], folder: Path, title: str) -> list[str]:
    """layer_pearson.png (one bar per layer) and neuron_pearson.png (each layer's per-neuron
    correlations, sorted) into `folder`; returns the file names written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [row["name"] for row in layers]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(names) + 2), 4.0), dpi=110)
    vals = [np.nan if row["pearson"] is None else row["pearson"] for row in layers]
    ax.bar(range(len(names)), vals, color="C0")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("Pearson correlation (layer)")
    ax.set_ylim(min([0.0] + [v for v in vals if np.isfinite(v)]), 1.0)
    ax.set_title(f"{title}: per-layer correlation")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "layer_pearson.png", metadata={"Software": None})
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, name in enumerate(names):
        r = np.sort(neurons.get(name, np.zeros(0)))
        r = r[np.isfinite(r)]
        if r.size:
            ax.plot(np.linspace(0, 100, r.size), r, ".-", ms=3, lw=1, color=f"C{i % 10}", label=name)
    ax.set_xlabel("neurons, sorted (percent of the layer)")
    ax.set_ylabel("Pearson correlation (neuron)")
    ax.set_title(f"{title}: per-neuron correlation")
    ax.grid(True, alpha=0.3)
    if names:
        ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "neuron_pearson.png", metadata={"Software": None})
    plt.close(fig)
    return ["layer_pearson.png", "neuron_pearson.png"]
