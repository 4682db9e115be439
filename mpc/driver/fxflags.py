"""The fixed-point flags of convert/verify: `--quantize W` and `--quantize-config FILE.toml` append
the `quantize` pass, with those options, to the target's pipeline (the string says what runs)."""
from __future__ import annotations

import argparse

from mpc.driver.flagtypes import int_range
from mpc.errors import BadFlag


def add_flags(p: argparse.ArgumentParser) -> None:
    """Add --quantize and --quantize-config to a conversion subcommand."""
    p.add_argument("--quantize", type=int_range(2, 32), metavar="W", default=None,
                   help="fixed point: W-bit formats for every tensor from calibration ranges (any target; "
                        "the default --emit becomes c)")
    p.add_argument("--quantize-config", metavar="FILE.toml", default=None,
                   help="fixed point: per-tensor widths/fractions, rounding and overflow (TOML)")


def with_quantize(pipeline: str, args) -> str:
    """`pipeline` followed by `quantize{...}` when --quantize or --quantize-config is given."""
    width, config = getattr(args, "quantize", None), getattr(args, "quantize_config", None)
    if width is None and config is None:
        return pipeline
    if getattr(args, "command", None) == "finetune":
        raise BadFlag("--quantize does not apply to finetune (training runs in float): fine-tune, then quantize "
                      "the result with: mpc convert OUT/model.mpc --target float --quantize W")
    if any(s.strip().startswith("quantize") for s in pipeline.split(",")):
        raise BadFlag("--quantize: the pipeline already runs quantize")
    if config is not None and any(c in config for c in ",{}="):
        raise BadFlag(f"--quantize-config: the file name '{config}' may not contain , {{ }} or =")
    options = ([f"width={width}"] if width is not None else []) + ([f"config={config}"] if config else [])
    return f"{pipeline},quantize{{{','.join(options)}}}"


def default_emit(args) -> tuple[str, ...]:
    """--emit, where a quantized conversion's default is the C backend (model.py has no fixed point)."""
    quantized = getattr(args, "quantize", None) is not None or getattr(args, "quantize_config", None) is not None
    return ("c",) if quantized and tuple(args.emit) == ("numpy",) else tuple(args.emit)
