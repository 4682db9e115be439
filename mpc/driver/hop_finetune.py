"""`mpc finetune MODEL --target hopfield --method dualprop|ep|backprop`: train the Hopfield form of a
feedforward model and write the converted folder (mpc.train.hopfield holds the training loops).

dualprop and ep train the lowered Hopfield net (hop.relax) in NumPy; backprop trains the canonical
feedforward graph through the torch lowering, then lowers it. All start from the model's weights.
"""
from __future__ import annotations

from pathlib import Path

from mpc.errors import BadFlag, BadInput


def config(args, settings):
    """The training settings from the finetune flags."""
    from mpc.train.hopfield import HopTrainConfig
    return HopTrainConfig(epochs=args.epochs, lr=args.lr, batch=args.batch_size, beta=args.beta or 0.5,
                          seed=settings.seed, quiet=settings.quiet, progress=settings.progress)


def finetune_hopfield(args, settings) -> int:
    """Train, convert and write the output folder; the report gets the per-epoch history."""
    from mpc.data import load_data
    from mpc.driver.compiler import compile_model, log, write_outdir
    from mpc.frontend import load
    from mpc.hop.graphio import net_of, relax_op, write_net
    from mpc.ir import verify_graph
    from mpc.passes.lower_hopfield import hop_report
    from mpc.passmanager import run_pipeline
    from mpc.train import hopfield as T
    if args.learn_gamma:
        raise BadFlag("--learn-gamma applies to --target mp only")
    method, cfg = args.method or "dualprop", config(args, settings)
    loaded = load(args.model, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch)
    data = load_data(args.data, loaded.graph, loaded.input_names)
    if data.labels is None:
        raise BadInput(f"{data.source}: fine-tuning needs 'labels' in the data file")
    x = data.feeds[loaded.graph.inputs[0].name]
    if method == "backprop":
        run_pipeline(loaded.graph, "canonicalize")
        result = T.train_backprop(loaded.graph, x, data.labels, cfg)
    compiled = compile_model(args.model, settings, loaded=loaded, train=data)
    op = relax_op(compiled.graph)
    if method != "backprop":
        net, result = T.train_dyadic(method, net_of(compiled.graph, op), x, data.labels, cfg)
        write_net(compiled.graph, op, net, {"dualprop": "dp", "ep": "ep"}[method])
    verify_graph(compiled.graph)
    compiled.ctx.report.section("Hopfield", hop_report(compiled.graph, op, compiled.ctx))
    compiled.ctx.report.section(f"Fine-tuning ({method})", result.history)
    outdir = Path(args.output)
    write_outdir(compiled, settings, outdir, args.force)
    last = result.history[-1]
    log(settings, f"mpc: trained {args.model} by {method} for {len(result.history)} epochs in {result.seconds:.1f} s "
                  f"(loss {last['loss']:.4f}, train accuracy {100 * last['train accuracy']:.2f}%) -> {outdir}/")
    return 0
