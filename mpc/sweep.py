"""`mpc sweep-gamma`: accuracy of the MP model against one global γ (seed 000 Fig 3.6).

For each γ of a log grid every MP layer gets that γ (c, gains and offsets still calibrated), and
the converted model's accuracy is measured on labelled data. The per-layer γ that calibration
chooses on its own is marked on the plot, with the accuracy it reaches.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mpc.compiler import Settings, compile_model
from mpc.data import batches, load_data
from mpc.errors import BadInput
from mpc.frontend import load
from mpc.ir import clone, run
from mpc.outdir import staged_dir


def accuracy(graph, data) -> float:
    """Top-1 accuracy of the first output against the labels."""
    correct = 0
    for feeds, labels in batches(data, 256):
        out = run(graph, feeds)[graph.outputs[0].name]
        correct += int((out.reshape(out.shape[0], -1).argmax(1) == labels).sum())
    return correct / data.size


def sweep(spec: str, settings: Settings, data_path: str, gammas: list[float]) -> dict:
    """Accuracy per global γ, plus the calibrated per-layer choice."""
    loaded = load(spec, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch)
    data = load_data(data_path, loaded.graph, loaded.input_names)
    if data.labels is None:
        raise BadInput(f"{data_path}: sweep-gamma needs 'labels' in the data file")
    quiet = dataclasses.replace(settings, quiet=True)
    rows = []
    for g in tqdm(gammas, desc="sweep-gamma", file=sys.stderr, disable=settings.quiet, delay=2, leave=False):
        fixed = dataclasses.replace(quiet, extra=tuple(kv for kv in settings.extra if kv[0] != "gamma") +
                                    (("gamma", float(g)),))
        c = compile_model(spec, fixed, loaded=dataclasses.replace(loaded, graph=clone(loaded.graph)))
        rows.append({"gamma": float(g), "accuracy": accuracy(c.graph, data)})
    auto = compile_model(spec, quiet, loaded=dataclasses.replace(loaded, graph=clone(loaded.graph)))
    chosen = [op.attrs.gamma for op in auto.graph.ops if op.kind.startswith("mp.")]
    return {"rows": rows, "calibrated_gammas": chosen, "calibrated_accuracy": accuracy(auto.graph, data),
            "source_accuracy": accuracy(loaded.graph, data)}


def write(result: dict, outdir: Path, force: bool, title: str) -> list[str]:
    """sweep.csv and sweep.png into `outdir` (atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with staged_dir(outdir, force) as tmp:
        lines = ["gamma,accuracy"] + [f"{r['gamma']!r},{r['accuracy']!r}" for r in result["rows"]]
        lines += [f"# calibrated per-layer gammas: {' '.join(repr(g) for g in result['calibrated_gammas'])}",
                  f"# calibrated accuracy: {result['calibrated_accuracy']!r}",
                  f"# source accuracy: {result['source_accuracy']!r}"]
        (tmp / "sweep.csv").write_text("\n".join(lines) + "\n")
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        g = [r["gamma"] for r in result["rows"]]
        ax.semilogx(g, [100 * r["accuracy"] for r in result["rows"]], "o-", label="one global γ (c, gains calibrated)")
        ax.axhline(100 * result["source_accuracy"], color="gray", ls=":", label="source model")
        ax.axhline(100 * result["calibrated_accuracy"], color="C2", ls="--",
                   label=f"per-layer calibration ({100 * result['calibrated_accuracy']:.2f}%)")
        for i, cg in enumerate(result["calibrated_gammas"]):
            ax.axvline(cg, color="C3", alpha=0.5, lw=1, label="calibrated γ per layer" if i == 0 else None)
        ax.set_xlabel("γ")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower center", fontsize=8)
        fig.tight_layout()
        fig.savefig(tmp / "sweep.png", metadata={"Software": None})
        plt.close(fig)
    return ["sweep.csv", "sweep.png"]


def default_grid(lo: float = 2.0 ** -4, hi: float = 2.0 ** 12, n: int = 17) -> list[float]:
    """A log grid of γ values."""
    return [float(v) for v in np.geomspace(lo, hi, n)]
