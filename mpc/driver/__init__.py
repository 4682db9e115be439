"""The driver: what the `mpc` command runs around the compiler core.

cli (argument parsing, one-line errors), compiler (load, run a target's pipeline, write an output folder),
targets, verify (compare with the source) and oracle (onnxruntime), runner (`mpc run`), report, outdir
(atomic output folders), sweep (`mpc sweep-gamma`), flagtypes (typed flag values). Passes and backends
never import from here.
"""
