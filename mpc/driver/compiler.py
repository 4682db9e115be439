"""The conversion driver shared by `convert`, `verify` and friends: load, pick the calibration
data a pipeline needs, run the pipeline, and write the artifacts of an output folder.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpc import __version__
from mpc.data import Dataset, load_data, npz_bytes, random_data
from mpc.driver.outdir import staged_dir
from mpc.driver.report import graph_summary, to_json, to_markdown
from mpc.driver.targets import get_target
from mpc.errors import BadFlag
from mpc.frontend import Loaded, load
from mpc.ir import Graph, parse, print_graph
from mpc.passmanager import (
    PassContext,
    PassRecord,
    check_dump_names,
    edit_pipeline,
    needs_data,
    parse_pipeline,
    run_pipeline,
)


@dataclass(frozen=True)
class Settings:
    """The driver's flags, as typed values (the CLI builds one). Pass options are not here: they are
    in the pipeline string (`passes`), where the CLI puts the flags that map onto them."""

    target: str = "float"
    passes: str | None = None   # a full pipeline, or an edit of the target's (+name, -name)
    emit: tuple[str, ...] = ("numpy",)
    calib: str | None = None
    dump_ir_after: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None
    exporter: str = "legacy"
    static_batch: bool = False   # keep a static leading 1 (else it becomes the batch N)
    timings: bool = False
    quiet: bool = False
    progress: bool = False   # show progress bars even when stderr is not a terminal
    seed: int = 0
    outputs: tuple[str, ...] = ()   # keep only these graph outputs (and what feeds them), before import
    parallel: int = 1   # --parallel P: the verilog backend's lower-hw{parallel=P}
    synth: tuple[str, ...] = ()   # --synth: FPGA families to synthesize the emitted RTL for (Yosys)
    synth_time_limit: float | None = None   # --synth-time-limit: seconds per tool run


@dataclass
class Compiled:
    """A converted graph and what it took to get there."""

    loaded: Loaded
    graph: Graph
    pipeline: str
    records: list[PassRecord]
    dumps: dict[str, str] = field(default_factory=dict)
    dump_weights: dict[str, Any] = field(default_factory=dict)
    ctx: PassContext | None = None


def pipeline_for(settings: Settings) -> str:
    """The pipeline string: the target's, edited by --passes."""
    return edit_pipeline(get_target(settings.target).pipeline, settings.passes)


CALIB_SAMPLES = 512   # without --calib, calibration uses this many leading samples of the training data


def calibration_slice(data: Dataset) -> Dataset:
    """The first CALIB_SAMPLES samples of the training Dataset (all if fewer), labelled as such."""
    n = min(CALIB_SAMPLES, data.size)
    what = f"the first {n} of {data.size}" if n < data.size else f"all {n}"
    return Dataset({k: v[:n] for k, v in data.feeds.items()}, None, f"{what} samples of {data.source} (--data)")


def calibration_data(settings: Settings, loaded: Loaded, train: Dataset | None = None,
                     pipeline: str | None = None) -> Dataset:
    """What calibrating passes see: --calib; else the head of the training data (`mpc finetune`);
    else 256 seeded U(0, 1) samples, with a warning. A --calib folder stays in shards (`ShardedDataset`)
    when every pass of `pipeline` that reads data computes only statistics; otherwise it is joined."""
    if settings.calib:
        from mpc.driver.shard_files import is_sharded, load_joined, load_sharded
        if is_sharded(settings.calib) and pipeline is not None and shard_aware(pipeline):
            return load_sharded(settings.calib, loaded.graph, loaded.input_names)
        if is_sharded(settings.calib):   # a pass fits on every sample at once (mp-calibrate): joined
            return load_joined(settings.calib, loaded.graph, loaded.input_names)
        return load_data(settings.calib, loaded.graph, loaded.input_names)
    if train is not None:   # calibrate on the training data, not on U(0, 1) noise
        data = calibration_slice(train)
        log(settings, f"mpc: no --calib: calibrating on {data.source}")
        return data
    data = random_data(loaded.graph, 256, settings.seed)
    count = f"{data.size} sample{'s' if data.size != 1 else ''}"
    log(settings, f"mpc: warning: no --calib data: calibrating on {count} of U(0, 1); pass --calib DATA.npz "
                  "for an accurate model")
    return data


SHARD_AWARE = ("lower-lif", "quantize")   # read calibration data only through mpc.calib.per_shard
READS_DATA = ("lower-hopfield", "snn-event")   # read ctx.dataset when it is there (not needs_data)


def shard_aware(pipeline: str) -> bool:
    """Whether every data-reading pass of `pipeline` takes a ShardedDataset."""
    stages = parse_pipeline(pipeline)
    readers = {s.name for s in stages if needs_data(s.name) or s.name in READS_DATA}
    return readers <= set(SHARD_AWARE)


def _counting_data(data):
    """The data C op counts run on: a sharded --calib folder gives only the samples the counts read."""
    from mpc.backends.c import COUNT_SAMPLES
    from mpc.calib import ShardedDataset
    return data.head(COUNT_SAMPLES) if isinstance(data, ShardedDataset) else data


def compile_model(spec: str, settings: Settings, loaded: Loaded | None = None,
                  train: Dataset | None = None) -> Compiled:
    """Load `spec` (unless given) and run the target pipeline on its graph, in memory; `train` (the
    training data of `mpc finetune`) is what calibration uses when there is no --calib file."""
    pipeline = pipeline_for(settings)
    parse_pipeline(pipeline)   # unknown passes and bad options fail here, before any work
    check_dump_names(set(settings.dump_ir_after))
    for e in settings.emit:
        from mpc.backends import BACKENDS
        if e not in BACKENDS:
            raise BadFlag(f"--emit: unknown backend '{e}' (expected one of: {', '.join(sorted(BACKENDS))})")
    loaded = loaded or load(spec, settings.input_shape, exporter=settings.exporter,
                            static_batch=settings.static_batch, outputs=settings.outputs)
    graph = loaded.graph
    dataset = calibration_data(settings, loaded, train, pipeline) if needs_data(pipeline) else None
    ctx = PassContext(dataset=dataset, seed=settings.seed, quiet=settings.quiet, progress=settings.progress,
                      source=loaded)
    compiled = Compiled(loaded, graph, pipeline, [], ctx=ctx)

    def dump(i: int, name: str, g: Graph) -> None:
        compiled.dumps[f"{i:02d}-{name}.mpc"] = print_graph(g)
        for w in g.used_weights():
            compiled.dump_weights.setdefault(w, g.weights[w])

    compiled.records = run_pipeline(graph, pipeline, ctx, dump, set(settings.dump_ir_after) or None)
    return compiled


def build_report(c: Compiled, settings: Settings, files: list[str], emitted: dict | None = None) -> dict[str, Any]:
    """The report dict written as report.json / report.md; `emitted` maps backend name -> Emitted."""
    def stages(records):
        return [{"name": r.name, "stats": r.stats} | ({"seconds": r.seconds} if settings.timings else {})
                for r in records]
    emitted = emitted or {}
    sections = dict(c.ctx.report.sections) if c.ctx else {}
    if c.ctx and c.ctx.report.notes:
        sections["Notes"] = list(c.ctx.report.notes)
    if c.loaded.onnx_model is not None and widened_note(c.loaded.onnx_model):
        sections["Element types"] = widened_note(c.loaded.onnx_model)
    for e in emitted.values():
        sections.update(e.report_sections)
    backends = {name: {"lowering": backend(name, settings).lowering, "passes": stages(e.lowering)}
                for name, e in emitted.items()}
    return {"model": c.graph.name, "source": c.loaded.source, "target": settings.target,
            "pipeline": c.pipeline, "mpc_version": __version__, "summary": graph_summary(c.graph),
            "passes": stages(c.records), "backends": backends, "sections": sections, "files": sorted(files)}


def widened_note(model) -> dict[str, str]:
    """Inputs and outputs the source declares float16/bfloat16, which mpc computes in float32."""
    from mpc.frontend.onnx import widened
    return {name: f"{t} in the source, computed in float32" for name, t in sorted(widened(model).items())}


def write_outdir(c: Compiled, settings: Settings, outdir: Path, force: bool) -> list[str]:
    """Write model.mpc, weights.npz, backend files (each from its own lowering of a clone of the graph),
    the --dump-ir-after dumps and the reports into `outdir` atomically."""
    from mpc.backends.base import emit
    with staged_dir(outdir, force) as tmp:
        text = print_graph(c.graph)
        (tmp / "model.mpc").write_text(text)
        weights = {w: c.graph.weights[w] for w in c.graph.used_weights()}
        (tmp / "weights.npz").write_bytes(npz_bytes(weights))
        files = ["model.mpc", "weights.npz", "report.json", "report.md"]
        emitted = {name: emit(backend(name, settings), c.graph, tmp, settings.target, c.ctx, settings.dump_ir_after)
                   for name in settings.emit}
        files += [f for e in emitted.values() for f in e.files]
        if "c" in emitted and c.ctx is not None and c.ctx.dataset is not None:   # counts need data
            from mpc.backends.c import with_counted_ops
            emitted["c"] = with_counted_ops(emitted["c"], c.graph, _counting_data(c.ctx.dataset))
        if "verilog" in emitted and settings.synth:   # Yosys (and nextpnr) numbers into resources.json/md
            from mpc.backends.verilog.synthesis import add_synthesis
            emitted["verilog"] = add_synthesis(tmp, emitted["verilog"], settings.synth, settings.synth_time_limit,
                                               settings.quiet, settings.progress)
        if c.dumps:
            (tmp / "ir").mkdir(exist_ok=True)
            for fname, dump_text in c.dumps.items():
                (tmp / "ir" / fname).write_text(dump_text)
            (tmp / "ir" / "weights.npz").write_bytes(npz_bytes(dict(sorted(c.dump_weights.items()))))
            files += [f"ir/{f}" for f in sorted(c.dumps)] + ["ir/weights.npz"]
        parse(text, weights, filename=str(outdir / "model.mpc"))   # the artifact must read back
        report = build_report(c, settings, files, emitted)
        (tmp / "report.json").write_text(to_json(report))
        (tmp / "report.md").write_text(to_markdown(report))
    return files


def log(settings: Settings, msg: str) -> None:
    """A progress line on stderr unless -q."""
    if not settings.quiet:
        print(msg, file=sys.stderr)


def backend(name: str, settings: Settings):
    """The registered backend `name`, with the verilog backend's lowering set from --parallel."""
    from mpc.backends import BACKENDS
    if name == "verilog":
        from mpc.backends.verilog import configured
        return configured(settings.parallel)
    return BACKENDS[name]
