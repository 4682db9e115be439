"""`mpc sweep-gamma`: accuracy of the MP model against one global γ.

For each γ of a grid of powers of two (exact in binary and in print) every MP layer gets that γ (c, gains and offsets still calibrated), and
the converted model's accuracy is measured on labelled data. The per-layer γ that calibration
chooses on its own is marked on the plot, with the accuracy it reaches.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

from mpc.data import batches, load_data
from mpc.driver.compiler import Settings, compile_model, pipeline_for
from mpc.driver.executor import LOCAL, ExecutorSpec, Point, run_points
from mpc.driver.outdir import staged_dir
from mpc.errors import BadFlag, BadInput
from mpc.frontend import load
from mpc.ir import clone, run
from mpc.passmanager import set_options
from mpc.progress import progress_bar

SWEEP_TASK = "mpc.driver.sweep:sweep_point"   # what each point runs, by name: workers import it


def accuracy(graph, data) -> float:
    """Top-1 accuracy of the first output against the labels."""
    correct = 0
    for feeds, labels in batches(data, 256):
        out = run(graph, feeds)[graph.outputs[0].name]
        correct += int((out.reshape(out.shape[0], -1).argmax(1) == labels).sum())
    return correct / data.size


def sweep_option(spec: str, settings: Settings, data_path: str, what: str, stage: str, option: str,
                 values, executor: ExecutorSpec = LOCAL, task: str = SWEEP_TASK) -> tuple:
    """(loaded source, labelled data, rows, outcomes): accuracy of the target with `stage{option=v}` for
    each v, each point a task on `executor` (rows: the points that succeeded, in the order of `values`)."""
    loaded = load(spec, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch,
                  outputs=settings.outputs)
    data = load_data(data_path, loaded.graph, loaded.input_names)
    if data.labels is None:
        raise BadInput(f"{data_path}: {what} needs 'labels' in the data file")
    base = {"spec": spec, "settings": dataclasses.asdict(dataclasses.replace(settings, quiet=True)),
            "data_path": data_path, "stage": stage, "option": option}
    points = [Point(f"{option}={v!r}", base | {"value": v}) for v in values]
    with progress_bar(desc=what.lstrip("-"), total=len(points), quiet=settings.quiet,
                      progress=settings.progress) as bar:
        outcomes = run_points(task, points, executor, on_done=bar.update)
    rows = [{option: v, "accuracy": o.value} for v, o in zip(values, outcomes) if o.ok]
    return loaded, data, rows, outcomes


@functools.lru_cache(maxsize=2)
def _source(spec: str, settings: Settings, data_path: str):
    """(loaded source, data) once per worker process: every point of a sweep starts from them."""
    loaded = load(spec, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch,
                  outputs=settings.outputs)
    return loaded, load_data(data_path, loaded.graph, loaded.input_names)


def sweep_point(payload: dict) -> float:
    """The task of one sweep point: accuracy of the target with `stage{option=value}` (plain-data payload:
    model path, flags, data path, option and value)."""
    settings = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["settings"].items()})
    loaded, data = _source(payload["spec"], settings, payload["data_path"])
    options = {payload["stage"]: {payload["option"]: payload["value"]}}
    fixed = dataclasses.replace(settings, passes=set_options(pipeline_for(settings), options))
    c = compile_model(payload["spec"], fixed, loaded=dataclasses.replace(loaded, graph=clone(loaded.graph)))
    return accuracy(c.graph, data)


def sweep(spec: str, settings: Settings, data_path: str, gammas: list[float],
          executor: ExecutorSpec = LOCAL) -> dict:
    """Accuracy per global γ, plus the calibrated per-layer choice (and the points that failed twice)."""
    loaded, data, rows, outcomes = sweep_option(spec, settings, data_path, "sweep-gamma", "mp-calibrate", "gamma",
                                                [float(g) for g in gammas], executor)
    quiet = dataclasses.replace(settings, quiet=True)
    auto = compile_model(spec, quiet, loaded=dataclasses.replace(loaded, graph=clone(loaded.graph)))
    chosen = [op.attrs.gamma for op in auto.graph.ops if op.kind.startswith("mp.")]
    result = {"rows": rows, "calibrated_gammas": chosen, "calibrated_accuracy": accuracy(auto.graph, data),
              "source_accuracy": accuracy(loaded.graph, data)}
    failed = [{"point": o.name, "error": o.error} for o in outcomes if not o.ok]
    return result | ({"failed": failed} if failed else {})


def write(result: dict, outdir: Path, force: bool, title: str) -> list[str]:
    """sweep.csv (gamma, accuracy), sweep.json (the grid, calibrated gammas, accuracies) and sweep.png
    into `outdir` (atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with staged_dir(outdir, force) as tmp:
        lines = ["gamma,accuracy"] + [f"{r['gamma']!r},{r['accuracy']!r}" for r in result["rows"]]
        (tmp / "sweep.csv").write_text("\n".join(lines) + "\n")
        (tmp / "sweep.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
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
    return ["sweep.csv", "sweep.json", "sweep.png"]


MAX_POINTS = 64


def power_grid(lo: float, hi: float) -> list[float]:
    """Every power of two from `lo` rounded down to `hi` rounded up (exact values); BadFlag when the
    grid would have more than MAX_POINTS points."""
    m, e = math.frexp(lo)
    k_lo = e - 1                           # lo = m * 2^e with 0.5 <= m < 1
    m, e = math.frexp(hi)
    k_hi = e - 1 if m == 0.5 else e
    if k_hi - k_lo + 1 > MAX_POINTS:
        raise BadFlag(f"the γ grid from 2^{k_lo} to 2^{k_hi} has {k_hi - k_lo + 1} points (at most {MAX_POINTS}): "
                      f"narrow --min/--max")
    return [math.ldexp(1.0, k) for k in range(k_lo, k_hi + 1)]
