"""`mpc finetune MODEL --target lif --method cvx --data TRAIN.npz`: convert, then repair the readout.

The model is converted for the lif target as `mpc convert` would (calibrating on --data unless --calib is
given), then its readout synapse is replaced by the certified optimum of the convex group Lasso over the
converted network's own spike dictionary on --data (mpc.snn.repair, solved by mpc.snn.cvx). The certificate
(primal, dual, gap), dictionary size and train accuracy before and after go to report.json and report.md
under "Readout repair", with the solve time when --timings is given (reports are otherwise byte-identical
for the same input and flags); the solve time is always on the stderr summary line.
"""
from __future__ import annotations

from pathlib import Path

from mpc.errors import BadFlag


def finetune_cvx(args, settings) -> int:
    """Convert for the lif target, repair the readout on --data, write the output folder."""
    from mpc.data import load_data
    from mpc.driver.compiler import compile_model, log, write_outdir
    from mpc.frontend import load
    from mpc.ir import verify_graph
    from mpc.snn.repair import repair_readout
    if settings.target != "lif":
        raise BadFlag(f"--method cvx applies to --target lif only, got '{settings.target}'")
    outdir = Path(args.output)
    loaded = load(args.model, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch)
    data = load_data(args.data, loaded.graph, loaded.input_names)
    compiled = compile_model(args.model, settings, loaded=loaded, train=data)
    res = repair_readout(compiled.graph, data, args.cvx_lambda)
    verify_graph(compiled.graph)
    compiled.ctx.report.section("Readout repair", res.section(args.timings))
    if not res.solution.converged:
        compiled.ctx.report.note(f"readout repair: {res.solution.reason} "
                                 f"(relative gap {res.solution.rel_gap:.3g})")
    write_outdir(compiled, settings, outdir, args.force)
    s = res.solution
    log(settings, f"mpc: readout of {args.model} re-solved over {res.dictionary} spike columns in {s.seconds:.2f} s "
                  f"(primal {s.primal:.6g}, dual {s.dual:.6g}, relative gap {s.rel_gap:.2g}; train accuracy "
                  f"{100 * res.accuracy_before:.2f}% -> {100 * res.accuracy_after:.2f}%) -> {outdir}/")
    return 0
