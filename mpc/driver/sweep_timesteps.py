"""`mpc verify --target lif --sweep-timesteps 4,8,...`: accuracy of the spiking model against the number
of time steps T (the neuron scales are calibrated again for each T, on the same data), written as
timesteps.csv and timesteps.png (the source's accuracy as a horizontal line) into an output folder."""
from __future__ import annotations

from pathlib import Path

from mpc.driver.compiler import Settings
from mpc.driver.executor import LOCAL, ExecutorSpec
from mpc.driver.outdir import staged_dir
from mpc.driver.sweep import accuracy, sweep_option
from mpc.errors import BadFlag


def parse_steps(text: str) -> tuple[int, ...]:
    """`4,8,16` as a sorted tuple of distinct step counts >= 1; BadFlag otherwise."""
    try:
        steps = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise BadFlag(f"--sweep-timesteps: expected comma-separated integers, got '{text}'") from None
    if not steps or steps[0] < 1 or steps[-1] > 100_000:
        raise BadFlag(f"--sweep-timesteps: expected integers from 1 to 100000, got '{text}'")
    return tuple(steps)


def sweep_timesteps(spec: str, settings: Settings, data_path: str | None, steps: tuple[int, ...],
                    executor: ExecutorSpec = LOCAL) -> dict:
    """Accuracy per T for the lif target, and the source's accuracy, on labelled data (and the points
    that failed twice)."""
    if settings.target != "lif":
        raise BadFlag(f"--sweep-timesteps needs --target lif (got {settings.target})")
    if not data_path:
        raise BadFlag("--sweep-timesteps needs labelled --data")
    loaded, data, rows, outcomes = sweep_option(spec, settings, data_path, "--sweep-timesteps", "lower-lif",
                                                "timesteps", steps, executor)
    failed = [{"point": o.name, "error": o.error} for o in outcomes if not o.ok]
    return {"rows": rows, "source_accuracy": accuracy(loaded.graph, data)} | ({"failed": failed} if failed else {})


def write_sweep(result: dict, outdir: Path, force: bool, title: str) -> list[str]:
    """timesteps.csv and timesteps.png into `outdir`, atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with staged_dir(outdir, force) as tmp:
        lines = ["timesteps,accuracy"] + [f"{r['timesteps']},{r['accuracy']!r}" for r in result["rows"]]
        lines.append(f"source,{result['source_accuracy']!r}")
        (tmp / "timesteps.csv").write_text("\n".join(lines) + "\n")
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        ts = [r["timesteps"] for r in result["rows"]]
        ax.semilogx(ts, [100 * r["accuracy"] for r in result["rows"]], "o-", base=2, label="lif (mpc)")
        ax.axhline(100 * result["source_accuracy"], color="gray", ls=":", label="source model")
        ax.set_xlabel("time steps T")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(tmp / "timesteps.png", metadata={"Software": None})
        plt.close(fig)
    return ["timesteps.csv", "timesteps.png"]
