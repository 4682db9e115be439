"""The sparsity flags of the CLI: `--prune lbi|magnitude --sparsity S | --lbi-lambda L --group G` put
`lbi-prune{...},fuse,dce` into the pipeline right after `canonicalize` (before any target lowering,
so an MP or spiking target is built from the pruned float layers), and `mpc finetune --optimizer
linbreg|adabreg --lbi-lambda L` trains with a Bregman optimizer (mpc.train.bregman), then fuses."""
from __future__ import annotations

import argparse
from pathlib import Path

from mpc.driver.flagtypes import positive_float
from mpc.errors import BadFlag


def fraction_below_one(text: str) -> float:
    """A sparsity: a number in [0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got '{text}'") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got '{text}'")
    return v


def add_prune_flags(p: argparse.ArgumentParser) -> None:
    """--prune, --sparsity, --lbi-lambda, --group (conversion commands)."""
    p.add_argument("--prune", choices=("lbi", "magnitude"), help="prune synapse weights after canonicalize")
    p.add_argument("--sparsity", type=fraction_below_one, help="fraction of weights to remove per layer (0.5)")
    p.add_argument("--lbi-lambda", type=positive_float, metavar="L",
                   help="LBI threshold (relative; with --prune lbi instead of --sparsity; the optimizer's λ "
                        "with mpc finetune --optimizer linbreg|adabreg)")
    p.add_argument("--group", choices=("none", "rows", "kernels"), help="prune single weights, rows or kernels")


def add_finetune_flags(p: argparse.ArgumentParser) -> None:
    """--optimizer for mpc finetune."""
    p.add_argument("--optimizer", choices=("adamw", "linbreg", "adabreg"), default="adamw",
                   help="adamw (MP fine-tuning) or a sparse Bregman optimizer (float, mp and lif targets)")


def prune_stage(args, optimizer_lambda: bool = False) -> str | None:
    """`lbi-prune{...}` for the flags given, or None without --prune."""
    prune = getattr(args, "prune", None)
    lam = None if optimizer_lambda else getattr(args, "lbi_lambda", None)
    if prune is None:
        if lam is not None or getattr(args, "sparsity", None) is not None or getattr(args, "group", None):
            raise BadFlag("--sparsity, --lbi-lambda and --group need --prune lbi|magnitude")
        return None
    if lam is not None and args.sparsity is not None:
        raise BadFlag("--prune: give --sparsity or --lbi-lambda, not both")
    if lam is not None and prune == "magnitude":
        raise BadFlag("--lbi-lambda needs --prune lbi (magnitude pruning takes --sparsity)")
    opts = ["method=magnitude"] if prune == "magnitude" else []   # lbi is the default: canonical text omits it
    opts += [f"lam={lam!r}"] if lam is not None else [f"sparsity={args.sparsity if args.sparsity is not None else 0.5!r}"]
    opts += [f"group={args.group}"] if args.group else []
    return "lbi-prune{" + ",".join(opts) + "}"


def with_pruning(pipeline: str, stage: str | None) -> str:
    """The pipeline with `stage,fuse,dce` after its canonicalize stage (first, when there is none)."""
    if stage is None:
        return pipeline
    from mpc.passmanager import _split
    items = _split(pipeline)
    at = next((i + 1 for i, s in enumerate(items) if s.split("{")[0] == "canonicalize"), 0)
    return ",".join(items[:at] + [stage, "fuse", "dce"] + items[at:])


def cmd_finetune_bregman(args, settings) -> int:
    """`mpc finetune --optimizer linbreg|adabreg`: convert (pruning if asked), train, fuse, write."""
    from mpc.data import load_data
    from mpc.driver.compiler import compile_model, log, write_outdir
    from mpc.frontend import load
    from mpc.ir import clone
    from mpc.passmanager import run_pipeline
    if settings.target not in ("float", "mp", "lif"):
        raise BadFlag(f"--optimizer {args.optimizer} supports --target float, mp and lif, got '{settings.target}'")
    outdir = Path(args.output)
    loaded = load(args.model, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch)
    source = clone(loaded.graph)
    data = load_data(args.data, loaded.graph, loaded.input_names)
    compiled = compile_model(args.model, settings, loaded=loaded, train=data)
    lam = args.lbi_lambda if args.lbi_lambda is not None else 1e-3
    teacher = _teacher(loaded, source, data) if args.distill > 0 else None
    history = _train(args, settings, compiled.graph, data, lam, teacher)
    compiled.records += run_pipeline(compiled.graph, "fuse,dce", compiled.ctx)
    compiled.ctx.report.section("Fine-tuning", history)
    if settings.target == "lif":   # what the kept synapses cost on the training data
        compiled.ctx.report.section("SynOps after fine-tuning", [_synops(compiled.graph, source, data)])
    write_outdir(compiled, settings, outdir, args.force)
    last = history[-1]
    log(settings, f"mpc: fine-tuned {args.model} with {args.optimizer} for {len(history)} epochs "
                  f"(train accuracy {100 * last['train accuracy']:.2f}%, active {100 * last['active ratio']:.1f}%)"
                  f" -> {outdir}/")
    return 0


def _train(args, settings, graph, data, lam: float, teacher) -> list[dict]:
    """The Bregman fine-tuning loop of the target: surrogate-gradient BPTT for lif, mpc.train.bregman else."""
    if settings.target == "lif":
        from mpc.train.spiking import finetune_snn
        return finetune_snn(graph, data, args.epochs, args.lr, args.batch_size, settings.seed, settings.quiet,
                            teacher, args.distill, args.weight_decay, settings.progress, args.surrogate,
                            args.slope, optimizer=args.optimizer, lam=lam).history
    from mpc.train.bregman import finetune_bregman
    return finetune_bregman(graph, data, args.optimizer, lam, args.epochs, args.lr, args.batch_size,
                            settings.seed, settings.quiet, settings.progress, teacher, args.distill,
                            args.val_fraction, args.lr_schedule).history


def _teacher(loaded, source, data):
    """The source model's logits on the training data (distillation target)."""
    from mpc.driver.oracle import run_source
    out = run_source(loaded.onnx_model, source, data, [], loaded.input_names, loaded.source)
    return out[loaded.onnx_model.graph.output[0].name if loaded.onnx_model else source.outputs[0].name]


def _synops(graph, source, data) -> dict:
    """SynOps per inference (spikes x non-zero fan-out) and their share of the same spikes at dense fan-out."""
    from mpc.snn.report import spiking_report
    c = spiking_report(graph, source, data)["cost"]
    dense = c.get("synops_dense_fan_out", c["synops"])
    return {"synops per inference": round(c["synops"], 3), "dense fan-out": round(dense, 3),
            "ratio": round(c["synops"] / dense, 6) if dense else 1.0}


__all__ = ["add_finetune_flags", "add_prune_flags", "cmd_finetune_bregman", "prune_stage", "with_pruning"]
