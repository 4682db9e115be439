"""The `mpc` command line: inspect, convert, verify, run, passes, ops.

Every user error is an MPCError printed as one line `mpc: error: ...` with exit code 2 (bad flags
included); anything else is a bug: exit 1, traceback only with --debug. `mpc verify` exits 3 when
one of its checks (--max-abs-err, --min-agreement, --max-accuracy-drop) fails.
"""
from __future__ import annotations

import argparse
import functools
import sys
import traceback
from pathlib import Path

from mpc import __version__
from mpc.driver.flagtypes import fraction, nonnegative_float, positive_float, positive_int, seed_int
from mpc.errors import BadFlag, MPCError


class _Parser(argparse.ArgumentParser):
    """argparse that raises BadFlag (one line) instead of printing usage and exiting."""

    def error(self, message: str):
        raise BadFlag(message)


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise BadFlag(f"--input-shape: expected comma-separated ints like 1,64, got '{text}'") from None
    if not dims or any(d < 1 for d in dims):
        raise BadFlag(f"--input-shape: dims must be >= 1, got '{text}'")
    return dims


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _conversion_flags(p: argparse.ArgumentParser, need_target: bool = True) -> None:
    from mpc.driver.targets import TARGETS, all_flags
    p.add_argument("model", help="model.onnx, model.pt (TorchScript), pkg.module:factory, or model.mpc")
    p.add_argument("--target", required=need_target, default="float",
                   help=f"conversion target ({', '.join(sorted(TARGETS))})")
    p.add_argument("--emit", type=_csv, default=("numpy",), help="backends to emit (comma-separated)")
    p.add_argument("--calib", help="calibration data (.npz keyed by input name)")
    p.add_argument("--passes", help="replace the pipeline (a,b,c) or edit it (+name, -name)")
    p.add_argument("--dump-ir-after", type=_csv, default=(), metavar="NAME|all",
                   help="write the IR after these passes to OUTDIR/ir/ (backend lowerings: ir/BACKEND/)")
    p.add_argument("--input-shape", type=_shape, help="input shape for a PyTorch model, e.g. 1,64")
    p.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy",
                   help="torch.onnx exporter for PyTorch models")
    p.add_argument("--seed", type=seed_int, default=0, help="seed for sampled data")
    p.add_argument("--static-batch", action="store_true",
                   help="keep inputs whose leading dim is 1 static (by default that 1 is read as the batch)")
    for flag, targets in all_flags():
        p.add_argument(f"--{flag.name}", type=flag.type, default=None, choices=flag.choices,
                       help=f"{flag.help} (target {', '.join(targets)})")
    p.add_argument("--outputs", type=_csv, default=(), metavar="NAME,...",
                   help="keep only these graph outputs and what feeds them (e.g. drop a ZipMap after them)")
    from mpc.driver.sparsity import add_prune_flags
    add_prune_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    p.add_argument("--progress", action="store_true",
                   help="show progress bars even when stderr is not a terminal")
    from mpc.driver.fxflags import add_flags
    add_flags(p)
    from mpc.driver import rtlflags
    rtlflags.add_flags(p)
    rtlflags.add_synth_flags(p)


def _inputs(args) -> list[str]:
    """The files a command reads: its output may neither be one of them nor hold one."""
    spec = args.model
    if spec.lower().endswith((".onnx", ".mpc", ".pt", ".pth")) or ":" not in spec:
        paths = [spec] + ([str(Path(spec).parent / "weights.npz")] if spec.lower().endswith(".mpc") else [])
    else:
        where = spec.rsplit(":", 1)[0]
        top = where.split(".")[0]
        paths = [p for p in ([where] if where.endswith(".py") else [top, top + ".py"]) if Path(p).exists()]
    return paths + [p for p in (getattr(args, "calib", None), getattr(args, "data", None)) if p]


def _check_output(outdir: Path, args) -> None:
    from mpc.driver.outdir import check_not_input, check_writable
    check_not_input(outdir, _inputs(args))
    check_writable(outdir, args.force)


def _target_flags():
    from mpc.driver.targets import all_flags
    return all_flags()


def _pipeline(args, target) -> str:
    """The target's pipeline edited by --passes, with the target flags given set as pass options
    (`--gamma 8` -> `mp-calibrate{gamma=8.0}`): the string alone says what runs."""
    from mpc.driver.targets import all_flags
    from mpc.passmanager import edit_pipeline, parse_pipeline, set_options
    pipeline = edit_pipeline(target.pipeline, args.passes)
    given = [(f, ts, getattr(args, f.name.replace("-", "_"), None)) for f, ts in all_flags()]
    given = [(f, ts, v) for f, ts, v in given if v is not None]
    for flag, targets, _ in given:
        if target.name not in targets:
            raise BadFlag(f"--{flag.name} does not apply to --target {target.name} (only {', '.join(targets)})")
    names = {s.name for s in parse_pipeline(pipeline)}
    options: dict[str, dict] = {}
    for flag, _, value in given:
        if flag.pass_name not in names:
            raise BadFlag(f"--{flag.name} sets option {flag.option} of {flag.pass_name}, which the pipeline "
                          f"'{pipeline}' does not run")
        options.setdefault(flag.pass_name, {})[flag.option] = value
    from mpc.driver import sparsity  # --prune puts lbi-prune,fuse,dce after canonicalize
    from mpc.driver.fxflags import with_quantize
    bregman = getattr(args, "optimizer", "adamw") != "adamw"   # then --lbi-lambda is the optimizer's
    pruned = sparsity.with_pruning(set_options(pipeline, options), sparsity.prune_stage(args, bregman))
    return with_quantize(pruned, args)


def _settings(args, **over):
    from mpc.driver.compiler import Settings
    from mpc.driver.targets import get_target
    target = get_target(args.target)
    from mpc.driver.fxflags import default_emit
    return Settings(target=target.name, passes=_pipeline(args, target), emit=default_emit(args), calib=args.calib,
                    dump_ir_after=args.dump_ir_after, input_shape=args.input_shape, exporter=args.exporter,
                    static_batch=args.static_batch, quiet=args.quiet, progress=args.progress, seed=args.seed,
                    outputs=args.outputs, parallel=_parallel(args), **_synth(args), **over)


def _parallel(args) -> int:
    from mpc.driver.rtlflags import parallel
    return parallel(args)


def _synth(args) -> dict:
    from mpc.driver.rtlflags import synth
    return synth(args)


def cmd_inspect(args) -> int:
    """Print the textual IR of a model (after --passes, if given)."""
    from mpc.frontend import load
    from mpc.ir import print_graph
    from mpc.passmanager import run_pipeline
    if args.model.endswith(".mpc") and not args.passes:
        text = Path(args.model).read_text() if Path(args.model).is_file() else None
        loaded = load(args.model, args.input_shape)
        printed = print_graph(loaded.graph)
        sys.stdout.write(text if text == printed else printed)
        return 0
    loaded = load(args.model, args.input_shape, exporter=args.exporter, static_batch=args.static_batch,
                  outputs=args.outputs)
    if args.passes:
        run_pipeline(loaded.graph, args.passes)
    from mpc.driver.compiler import widened_note
    for name, note in (widened_note(loaded.onnx_model) if loaded.onnx_model is not None else {}).items():
        sys.stdout.write(f"// '{name}': {note}\n")   # a comment: the text still parses back
    sys.stdout.write(print_graph(loaded.graph))
    return 0


def cmd_convert(args) -> int:
    """Convert a model for a target and write the output folder."""
    from mpc.driver.compiler import compile_model, log, write_outdir
    settings = _settings(args, timings=args.timings)
    outdir = Path(args.output or f"out/{Path(args.model.split(':')[0]).stem}")
    _check_output(outdir, args)
    compiled = compile_model(args.model, settings)
    files = write_outdir(compiled, settings, outdir, args.force)
    log(settings, f"mpc: converted {args.model} for target {settings.target} -> {outdir}/ "
                  f"({', '.join(files)})")
    width = max([22] + [len(r.name) for r in compiled.records])   # stage names with options are long
    for r in compiled.records:
        stats = ", ".join(f"{k}={v}" for k, v in r.stats.items())
        log(settings, f"  {r.name:<{width}} {r.seconds * 1000:8.1f} ms  {stats}")
    return 0


def cmd_verify(args) -> int:
    """Convert in memory and compare with the source model run in onnxruntime."""
    from mpc.driver.verify import NEURONS, Thresholds, print_table, save_plots, verify, verify_converted
    thresholds = Thresholds(args.max_abs_err, args.min_agreement, args.max_accuracy_drop)
    if args.plots:   # refuse an existing folder before the (long) measurement
        from mpc.driver.outdir import check_not_input, check_writable
        check_writable(Path(args.plots), args.force)
        check_not_input(Path(args.plots), [args.model] + ([args.data] if args.data else []))
    if args.source:
        for flag in ("target", "passes", "calib", "emit", "dump_ir_after", "quantize", "quantize_config") + tuple(
                f.name.replace("-", "_") for f, _ in _target_flags()):
            if getattr(args, flag, None) is not None:
                raise BadFlag(f"--{flag.replace('_', '-')} does not apply with --source: the converted model is "
                              f"compared as it is")
        args.target = "float"
    if args.target is None:
        raise BadFlag("verify needs --target T (or --source MODEL to check a converted folder or .mpc file)")
    args.emit, args.dump_ir_after = args.emit or ("numpy",), args.dump_ir_after or ()
    settings = _settings(args)
    steps = _sweep_check(args)
    from mpc.driver.shard_files import is_sharded
    if (args.executor or args.jobs or args.ray_address) and not (steps or is_sharded(args.data)):
        raise BadFlag("--executor, --jobs and --ray-address apply to --sweep-timesteps or a sharded --data DIR")
    if args.source:
        result = verify_converted(args.model, args.source, settings, args.data, args.samples, thresholds)
    elif is_sharded(args.data):   # a folder of .npz shards: per-shard summaries on the executor, merged
        from mpc.driver.executor import executor_spec
        from mpc.driver.shards import verify_sharded
        result = verify_sharded(args.model, settings, args.data, thresholds, executor_spec(args))
    else:
        result = verify(args.model, settings, args.data, args.samples, thresholds)
    if args.plots:
        save_plots(result, args.plots, args.force)
    result.pop(NEURONS, None)
    if args.json:
        import json
        print(json.dumps(result, sort_keys=True))
    else:
        print_table(result)
    points_failed = _sweep_timesteps(args, settings, steps) if steps else []   # lif: accuracy vs T (CSV + PNG)
    failed = [c for c in result["checks"] if not c["passed"]]
    sys.stdout.flush()
    for c in failed:
        print(f"mpc: check failed: {c['message']}", file=sys.stderr)
    for line in points_failed:
        print(line, file=sys.stderr)
    return 3 if failed or points_failed else 0


def _sweep_check(args) -> tuple[int, ...]:
    """The --sweep-timesteps grid, checked with its output folder before any work (empty without the flag)."""
    if not args.sweep_timesteps:
        if args.output or args.force:
            raise BadFlag("-o/--output and --force of verify apply only with --sweep-timesteps")
        return ()
    from mpc.driver.sweep_timesteps import parse_steps
    if args.source or args.target != "lif" or not args.data:
        raise BadFlag("--sweep-timesteps needs --target lif and labelled --data")
    steps = parse_steps(args.sweep_timesteps)
    _check_output(_sweep_dir(args), args)
    return steps


def _sweep_dir(args) -> Path:
    return Path(args.output or f"out/{Path(args.model.split(':')[0]).stem}-timesteps")


def _sweep_timesteps(args, settings, steps) -> list[str]:
    """Accuracy against T for `mpc verify --target lif --sweep-timesteps ...`; the points that failed twice."""
    from mpc.driver.executor import executor_spec
    from mpc.driver.sweep_timesteps import sweep_timesteps, write_sweep
    outdir = _sweep_dir(args)
    result = sweep_timesteps(args.model, settings, args.data, steps, executor_spec(args))
    write_sweep(result, outdir, args.force, f"{Path(args.model).name}: accuracy vs T (lif)")
    for r in result["rows"]:
        print(f"T {r['timesteps']:<6} accuracy {100 * r['accuracy']:.2f}%")
    print(f"source {100 * result['source_accuracy']:.2f}% -> {outdir}/timesteps.csv, timesteps.png")
    return [f"mpc: sweep point {f['point']} failed twice: {f['error']}" for f in result.get("failed", [])]


def cmd_run(args) -> int:
    """Run a converted output folder's model.py on a data file."""
    from mpc.driver.runner import run_outdir
    run_outdir(Path(args.outdir), args.data, args.output, args.force, args.quiet)
    return 0


def cmd_finetune(args) -> int:
    """Calibrate for the MP target, then fine-tune the MP network in torch and write the folder."""
    from mpc.data import load_data
    from mpc.driver.compiler import compile_model, log, write_outdir
    settings = _settings(args)
    from mpc.driver.ddp import check_ddp
    ddp = check_ddp(args)   # --ddp N: mp target only, checked before any other branch
    if settings.target == "hopfield":   # dual propagation, EP or backprop (mpc.driver.hop_finetune)
        from mpc.driver.hop_finetune import finetune_hopfield
        _check_output(Path(args.output), args)
        return finetune_hopfield(args, settings)
    if args.method == "cvx":   # convex readout repair of a converted SNN (mpc.driver.cvx_finetune)
        from mpc.driver.cvx_finetune import finetune_cvx
        _check_output(Path(args.output), args)
        return finetune_cvx(args, settings)
    if args.method in ("fptt", "bptt"):   # sequence fine-tuning of --target ltc (mpc.driver.finetune_fptt)
        from mpc.driver.finetune_fptt import finetune_sequence
        _check_output(Path(args.output), args)
        return finetune_sequence(args, settings)
    if args.method is not None or args.beta is not None:
        raise BadFlag("--method and --beta apply to --target hopfield only")
    if args.optimizer != "adamw":   # sparse Bregman fine-tuning (float and mp), see mpc.driver.sparsity
        from mpc.driver.sparsity import cmd_finetune_bregman
        _check_output(Path(args.output), args)
        return cmd_finetune_bregman(args, settings)
    if settings.target == "lif":   # spiking: surrogate-gradient BPTT (mpc.train.spiking)
        return _finetune_lif(args, settings)
    if settings.target != "mp":
        raise BadFlag(f"mpc finetune supports --target mp, lif and hopfield only, got '{settings.target}'")
    outdir = Path(args.output)
    _check_output(outdir, args)
    from mpc.driver.oracle import run_source
    from mpc.frontend import load
    from mpc.ir import clone
    from mpc.passes.mp_calibrate import GainMode
    from mpc.passmanager import pass_options
    from mpc.train.finetune import finetune
    loaded = load(args.model, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch,
                  outputs=settings.outputs)
    source = clone(loaded.graph)
    data = load_data(args.data, loaded.graph, loaded.input_names)
    compiled = compile_model(args.model, settings, loaded=loaded, train=data)
    calibrated = pass_options(compiled.pipeline, "mp-calibrate")
    teacher = None
    if args.distill > 0:
        out = run_source(loaded.onnx_model, source, data, [], loaded.input_names, loaded.source)
        teacher = out[loaded.onnx_model.graph.output[0].name if loaded.onnx_model else source.outputs[0].name]
    options = {"epochs": args.epochs, "lr": args.lr, "batch": args.batch_size, "learn_gamma": args.learn_gamma,
               "gain_terms": calibrated.gain_terms, "float_gains": calibrated.gain is GainMode.FLOAT,
               "seed": settings.seed, "quiet": settings.quiet, "teacher": teacher, "distill": args.distill,
               "weight_decay": args.weight_decay, "progress": settings.progress, "val_fraction": args.val_fraction,
               "schedule": args.lr_schedule}
    if ddp:   # DistributedDataParallel on `ddp` local ranks; rank 0 hands the trained graph back
        from mpc.driver.ddp import finetune_ddp
        compiled.graph, res = finetune_ddp(compiled.graph, data, ddp, options | {"quiet": True, "progress": False})
    else:
        res = finetune(compiled.graph, data, **options)
    from mpc.ir import verify_graph
    verify_graph(compiled.graph)
    compiled.ctx.report.section("Fine-tuning", res.history)
    if res.selected_epoch is not None:
        compiled.ctx.report.note(f"finetune: wrote epoch {res.selected_epoch} of {res.epochs}, the best on "
                                 f"{len(res.val_indices)} held-out samples ({100 * res.val_accuracy:.2f}%)")
    write_outdir(compiled, settings, outdir, args.force)
    log(settings, f"mpc: fine-tuned {args.model} for {res.epochs} epochs in {res.seconds:.1f} s "
                  f"(loss {res.final_loss:.4f}, train accuracy {100 * res.train_accuracy:.2f}%) -> {outdir}/")
    return 0


def _finetune_lif(args, settings) -> int:
    """`mpc finetune --target lif`: convert, then train the spiking network with surrogate gradients."""
    from mpc.data import load_data
    from mpc.driver.compiler import compile_model, log, write_outdir
    from mpc.driver.oracle import run_source
    from mpc.frontend import load
    from mpc.ir import clone, verify_graph
    from mpc.train.spiking import finetune_snn
    outdir = Path(args.output)
    _check_output(outdir, args)
    loaded = load(args.model, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch)
    source = clone(loaded.graph)
    data = load_data(args.data, loaded.graph, loaded.input_names)
    compiled = compile_model(args.model, settings, loaded=loaded, train=data)
    teacher = None
    if args.distill > 0:
        out = run_source(loaded.onnx_model, source, data, [], loaded.input_names, loaded.source)
        teacher = out[loaded.onnx_model.graph.output[0].name if loaded.onnx_model else source.outputs[0].name]
    res = finetune_snn(compiled.graph, data, args.epochs, args.lr, args.batch_size, settings.seed, settings.quiet,
                       teacher, args.distill, args.weight_decay, settings.progress, args.surrogate, args.slope)
    verify_graph(compiled.graph)
    compiled.ctx.report.section("Fine-tuning", res.history)
    write_outdir(compiled, settings, outdir, args.force)
    log(settings, f"mpc: fine-tuned {args.model} for {res.epochs} epochs in {res.seconds:.1f} s "
                  f"(loss {res.final_loss:.4f}, train accuracy {100 * res.train_accuracy:.2f}%) -> {outdir}/")
    return 0


def cmd_sweep(args) -> int:
    """Accuracy against one global gamma, on a grid of powers of two (CSV, JSON notes, PNG)."""
    from mpc.driver.sweep import power_grid, sweep, write
    args.target = "mp"
    if not args.min < args.max:
        raise BadFlag(f"--min ({args.min:g}) must be smaller than --max ({args.max:g})")
    settings = _settings(args)
    outdir = Path(args.output or f"out/{Path(args.model.split(':')[0]).stem}-sweep")
    _check_output(outdir, args)
    grid = power_grid(args.min, args.max)
    from mpc.driver.executor import executor_spec
    result = sweep(args.model, settings, args.data, grid, executor_spec(args))
    result["grid"] = {"min": grid[0], "max": grid[-1], "requested_min": args.min, "requested_max": args.max}
    write(result, outdir, args.force, f"{Path(args.model).name}: accuracy vs γ")
    for r in result["rows"]:
        print(f"gamma {r['gamma']:<12.6g} accuracy {100 * r['accuracy']:.2f}%")
    print(f"calibrated per-layer gammas {result['calibrated_gammas']}: {100 * result['calibrated_accuracy']:.2f}% "
          f"(source {100 * result['source_accuracy']:.2f}%) -> {outdir}/sweep.csv, sweep.json, sweep.png")
    sys.stdout.flush()
    for f in result.get("failed", []):   # the other points are written; the exit status says some are missing
        print(f"mpc: sweep point {f['point']} failed twice: {f['error']}", file=sys.stderr)
    return 3 if result.get("failed") else 0


def cmd_passes(args) -> int:
    """List the registered passes and aliases."""
    from mpc.passmanager import option_defaults, registered
    for name, kind, summary in registered():
        print(f"{name:<22} {kind:<6} {summary}")
        options = option_defaults(name) if kind == "pass" else None
        if options:
            print(f"{'':<29} options (defaults): {name}{{{options}}}")
    return 0


def cmd_ops(args) -> int:
    """List the op kinds the IR knows: operands, attributes, traits, summary."""
    from mpc.ir import TRAITS, known_kinds, lookup
    for k in known_kinds():
        d = lookup(k)
        fields = ", ".join(f.name for f in d.attr_fields())
        traits = ", ".join(t for t in TRAITS if t in d.traits)
        print(f"{k:<20} ({', '.join(d.operands)}){' {' + fields + '}' if fields else ''} [{traits}]  {d.summary}")
    return 0


VERIFY_EXIT = """exit status:
  0  compared, and every check given passed
  2  user error (bad flag, model or data): one line 'mpc: error: ...'
  3  a check failed: the table (or JSON, with a 'checks' list) is printed as usual, then one
     stderr line per failed check, e.g. 'mpc: check failed: top-1 agreement 84.38% < 90.00%'
  1  internal error (a bug)"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = _Parser(prog="mpc", description="Compile trained networks (ONNX, PyTorch) to standalone NumPy models: "
                                        "float, or multiplierless margin propagation (MP).")
    p.add_argument("--version", action="version", version=f"mpc {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks (accepted anywhere on the line)")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])
    s = sub.add_parser("inspect", help="print the textual IR of a model")
    s.add_argument("model")
    s.add_argument("--passes", help="run these passes first")
    s.add_argument("--input-shape", type=_shape)
    s.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy")
    s.add_argument("--static-batch", action="store_true", help="keep a static leading 1 of the inputs")
    s.add_argument("--outputs", type=_csv, default=(), metavar="NAME,...",
                   help="keep only these graph outputs and what feeds them")
    s.set_defaults(fn=cmd_inspect)
    s = sub.add_parser("convert", help="convert a model for a target into an output folder")
    _conversion_flags(s)
    s.add_argument("-o", "--output", help="output folder (default out/<model name>)")
    s.add_argument("--force", action="store_true", help="replace an existing output folder")
    s.add_argument("--timings", action="store_true", help="record per-pass wall times in the report")
    s.set_defaults(fn=cmd_convert)
    s = sub.add_parser("verify", help="convert in memory and compare with the source in onnxruntime",
                       epilog=VERIFY_EXIT, formatter_class=argparse.RawDescriptionHelpFormatter)
    _conversion_flags(s, need_target=False)   # required unless --source (checked in cmd_verify)
    s.add_argument("--data", help="data .npz (default: seeded random inputs)")
    s.add_argument("--samples", type=positive_int, default=256, help="random samples when no --data")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--source", metavar="MODEL",
                   help="check MODEL (a converted folder or .mpc) as it is against this source model")
    s.set_defaults(target=None, emit=None, dump_ir_after=None)
    s.add_argument("--max-abs-err", type=nonnegative_float, metavar="E",
                   help="check: max abs error of the outputs <= E")
    s.add_argument("--min-agreement", type=fraction, metavar="P",
                   help="check: top-1 agreement >= P, a fraction in [0, 1] (0.9 for 90%%)")
    s.add_argument("--max-accuracy-drop", type=fraction, metavar="D",
                   help="check: source accuracy - converted accuracy <= D, a fraction (needs labels)")
    s.add_argument("--sweep-timesteps", metavar="T,T,...",
                   help="lif target: also write accuracy vs time steps (timesteps.csv, timesteps.png)")
    s.add_argument("-o", "--output", help="folder for --sweep-timesteps (default out/<model>-timesteps)")
    s.add_argument("--force", action="store_true", help="replace an existing --sweep-timesteps or --plots folder")
    s.add_argument("--plots", metavar="DIR",
                   help="write the layer and per-neuron correlation figures (PNG) into the new folder DIR")
    from mpc.driver.executor import add_executor_flags
    add_executor_flags(s)
    s.set_defaults(fn=cmd_verify)
    s = sub.add_parser("run", help="run a converted folder's model.py on data")
    s.add_argument("outdir")
    s.add_argument("--data", required=True)
    s.add_argument("-o", "--output", help="write outputs to this .npz")
    s.add_argument("--force", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("finetune", help="calibrate, then fine-tune the MP model in torch")
    _conversion_flags(s)
    s.add_argument("--data", required=True, help="training data .npz with labels")
    s.add_argument("--epochs", type=positive_int, default=10, help="epochs (the last one with gains frozen)")
    s.add_argument("--distill", type=fraction, default=0.7,
                   help="weight of distillation from the source model's logits (0: labels only)")
    s.add_argument("--weight-decay", type=nonnegative_float, default=0.0)
    s.add_argument("--lr", type=positive_float, default=2e-3, help="AdamW learning rate")
    s.add_argument("--batch-size", type=positive_int, default=64)
    s.add_argument("--learn-gamma", action="store_true", help="learn gamma too (snapped to the grid at the end)")
    s.add_argument("--method", choices=("dualprop", "ep", "backprop", "cvx", "fptt", "bptt"), default=None,
                   help="hopfield target: dual propagation (default), equilibrium propagation (--lambda 1) or backprop; "
                        "lif target: cvx (readout replaced by the certified convex optimum); "
                        "ltc target: fptt or bptt (sequence fine-tuning)")
    s.add_argument("--cvx-lambda", type=positive_float, default=1e-2,
                   help="--method cvx: group-Lasso weight as a fraction of the smallest one giving a zero readout")
    s.add_argument("--timings", action="store_true", help="--method cvx: record the solve time in the report")
    s.add_argument("--beta", type=positive_float, default=None, help="hopfield target: nudging strength (default 0.5)")
    s.add_argument("--surrogate", choices=("fast-sigmoid", "arctan"), default="fast-sigmoid",
                   help="lif target: surrogate derivative of the spike")
    s.add_argument("--slope", type=positive_float, default=25.0, help="lif target: slope of the surrogate")
    s.add_argument("--val-fraction", type=fraction, default=0.1,
                   help="fraction of --data held out to pick the epoch written (0: the last epoch)")
    s.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                   help="learning-rate schedule over the steps (cosine down to lr/20)")
    from mpc.driver.sparsity import add_finetune_flags
    add_finetune_flags(s)
    from mpc.driver.ddp import add_ddp_flag
    add_ddp_flag(s)
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_finetune)
    s = sub.add_parser("sweep-gamma", help="accuracy vs one global gamma for the MP target (CSV, JSON, PNG)")
    _conversion_flags(s, need_target=False)
    s.add_argument("--data", required=True, help="labelled data .npz")
    s.add_argument("--min", type=positive_float, default=2.0 ** -4,
                   help="smallest gamma (rounded down to a power of two)")
    s.add_argument("--max", type=positive_float, default=2.0 ** 12,
                   help="largest gamma (rounded up to a power of two); the grid is every power of two between")
    s.add_argument("-o", "--output", help="output folder (default out/<model>-sweep)")
    s.add_argument("--force", action="store_true")
    from mpc.driver.executor import add_executor_flags
    add_executor_flags(s)
    s.set_defaults(fn=cmd_sweep)
    s = sub.add_parser("train-snn", help="train a recurrent spiking network from scratch on a sequence task")
    s.add_argument("--task", required=True,
                   choices=("first-last-xor", "mnist-seq", "digits-seq", "smnist", "psmnist"),
                   help="cvx|sg|sg-cvx|sg-sg: first-last-xor, mnist-seq, digits-seq; "
                        "fptt|bptt: smnist, psmnist, digits-seq")
    s.add_argument("--method", required=True, choices=("cvx", "sg", "sg-cvx", "sg-sg", "fptt", "bptt"),
                   help="cvx: Gaussian witnesses + certified convex readout; sg: surrogate gradients; "
                        "sg-cvx: sg, then the convex readout; sg-sg: sg, then sg again; "
                        "fptt|bptt: an LTC-SRNN (--arch) trained by forward or backward propagation through time")
    s.add_argument("--arch", help="fptt|bptt: ltc-srnn:HIDDEN")
    s.add_argument("--depth", type=positive_int, default=1, help="cvx/sg methods: hidden recurrent LIF layers")
    s.add_argument("--timesteps", type=positive_int, default=8, help="cvx/sg methods: time steps per sequence")
    s.add_argument("--seq-len", type=positive_int, help="fptt|bptt: steps per image (default: one pixel per step)")
    s.add_argument("--limit", type=positive_int, help="fptt|bptt: at most this many training samples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs (per sg stage); default 20 for the sg methods, 1 for fptt|bptt")
    s.add_argument("--lr", type=positive_float, default=None, help="fptt|bptt: Adam learning rate (default 5e-3)")
    s.add_argument("--fptt-alpha", type=positive_float, default=0.5, help="fptt: regulariser strength alpha")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--force", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(fn=_cmd_train_snn)
    s = sub.add_parser("passes", help="list passes")
    s.set_defaults(fn=cmd_passes)
    s = sub.add_parser("ops", help="list op kinds")
    s.set_defaults(fn=cmd_ops)
    return p


def _cmd_train_snn(args) -> int:
    """Training from scratch on a sequence task: recurrent LIF with a convex readout or surrogate gradients
    (mpc.driver.train_snn), or an LTC-SRNN with FPTT/BPTT (mpc.driver.train_snn_fptt)."""
    fptt = args.method in ("fptt", "bptt")
    tasks = ("smnist", "psmnist", "digits-seq") if fptt else ("first-last-xor", "mnist-seq", "digits-seq")
    if args.task not in tasks:
        raise BadFlag(f"train-snn --method {args.method} takes --task {'|'.join(tasks)}, got {args.task!r}")
    if fptt and args.arch is None:
        raise BadFlag(f"train-snn --method {args.method} needs --arch ltc-srnn:HIDDEN")
    if not fptt and args.arch is not None:
        raise BadFlag(f"--arch applies to --method fptt|bptt, not {args.method}")
    if args.epochs is None:
        args.epochs = 1 if fptt else 20
    if fptt:
        from mpc.driver.train_snn_fptt import LR, cmd_train_snn_fptt
        args.lr = LR if args.lr is None else args.lr
        return cmd_train_snn_fptt(args)
    from mpc.driver.train_snn import cmd_train_snn
    return cmd_train_snn(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 2 user error, 3 verify check failed, 1 internal error)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "fn", None):
            raise BadFlag("missing command (expected one of: inspect, convert, verify, run, finetune, sweep-gamma, "
                          "passes, ops)")
        return args.fn(args)
    except MPCError as e:
        if debug:
            traceback.print_exc()
        print(f"mpc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mpc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - a bug: say so, show the traceback only with --debug
        if debug:
            traceback.print_exc()
        print(f"mpc: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)",
              file=sys.stderr)
        return 1


def entry() -> None:
    """Console-script entry."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
