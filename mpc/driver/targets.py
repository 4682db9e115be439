"""Named targets: each is a pass pipeline (a string, the only source of what runs) and the flags
that map onto options of its passes (`--gamma 8` becomes `mp-calibrate{gamma=8.0}`)."""
from __future__ import annotations

from dataclasses import dataclass

from mpc.driver.flagtypes import int_range, positive_float
from mpc.driver.flagtypes import unit_interval as lambda_float
from mpc.errors import BadFlag


@dataclass(frozen=True)
class Flag:
    """A target-specific command-line flag (e.g. --gamma for mp), added to convert/verify: it sets
    option `option` of pass `pass_name` in the pipeline (the default is the option's)."""

    name: str
    type: object   # an argparse converter (mpc.driver.flagtypes) or str
    help: str
    pass_name: str
    option: str
    choices: tuple | None = None


@dataclass(frozen=True)
class Target:
    """A conversion target: its name, pipeline string, summary and its own flags."""

    name: str
    pipeline: str
    summary: str
    flags: tuple[Flag, ...] = ()


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("float", "canonicalize", "float model after canonicalization (BN folded, Gemm split, dead code removed)"),
    Target("mp", "canonicalize,mp-rewrite,mp-calibrate,dce",
           "multiplierless margin propagation (Nair et al. 2022): every matmul/gemm/conv becomes a calibrated MP op",
           flags=(Flag("gamma", positive_float, "fix gamma for every MP layer instead of calibrating it",
                       "mp-calibrate", "gamma"),
                  Flag("gain-terms", int_range(1, 32), "signed power-of-two terms per MP gain (default 2)",
                       "mp-calibrate", "gain_terms"),
                  Flag("gain", str, "MP gains as shift-add constants (default) or plain floats",
                       "mp-calibrate", "gain", choices=("shift-add", "float")),
                  Flag("refine", str, "after the per-layer fits, lower the error of blocks or of the logits "
                       "(default none)", "mp-calibrate", "refine", choices=("none", "blocks", "e2e")),
                  Flag("channel-scale", str, "a power-of-two weight scale per output channel, chosen on "
                       "calibration data: off (default), on, or auto (per layer, kept when it lowers the error "
                       "on held-out calibration samples); true/false mean on/off", "mp-calibrate", "channel_scale",
                       choices=("off", "on", "auto", "true", "false")))),
    Target("hopfield", "canonicalize,lower-hopfield,dce",
           "layered Hopfield network (dyadic neurons, Hoier et al. 2024): one relaxation with W_lambda connectivity",
           flags=(Flag("lambda", lambda_float, "W_lambda = theta - theta^T + 2 lambda theta^T: 0.5 feedforward "
                       "(default), 1 symmetric, 0 skew-symmetric", "lower-hopfield", "lam"),
                  Flag("schedule", str, "relaxation schedule (default sweeps)", "lower-hopfield", "schedule",
                       choices=("sweeps", "jacobi")))),
]}

# Spiking targets (mpc.snn): rate-coded IF neurons.
TARGETS["lif"] = Target(
    "lif", "canonicalize,lower-lif,dce",
    "rate-coded integrate-and-fire SNN (snn.lif) by data-based normalization; output read out by membrane",
    flags=(Flag("timesteps", int_range(1, 1_000_000), "time steps T of the simulation (default 32)",
                "lower-lif", "timesteps"),
           Flag("norm", str, "neuron scale from calibration activations: max, p99.9 (default) or p99.99",
                "lower-lif", "norm", choices=("max", "p99.9", "p99.99")),
           Flag("norm-granularity", str, "one neuron scale per layer (default) or per channel",
                "lower-lif", "granularity", choices=("layer", "channel"))))

TARGETS["nlif"] = Target(
    "nlif", "canonicalize,lower-nlif,dce",
    "exact time-to-first-spike n-LIF network (snn.nlif): one spike per neuron, error falls to 0 with dt",
    flags=(Flag("dt", positive_float, "n-LIF time step, in units of the synaptic time constant (default 0.01)",
                "lower-nlif", "dt"),))


def get_target(name: str) -> Target:
    """The target called `name`; BadFlag naming the known ones otherwise."""
    if name not in TARGETS:
        raise BadFlag(f"unknown target '{name}' (expected one of: {', '.join(sorted(TARGETS))})")
    return TARGETS[name]


def all_flags() -> list[tuple[Flag, list[str]]]:
    """Every target-specific flag with the targets that take it (a flag may serve several)."""
    seen: dict[str, tuple[Flag, list[str]]] = {}
    for t in TARGETS.values():
        for f in t.flags:
            seen.setdefault(f.name, (f, []))[1].append(t.name)
    return [seen[k] for k in sorted(seen)]

# Recurrent spiking target (mpc/ir/ops_rnn.py): forward RNN/GRU layers become LTC spiking neuron layers.
TARGETS["ltc"] = Target(
    "ltc", "canonicalize,lower-ltc,dce",
    "LTC spiking recurrent network (snn.ltc): forward RNN/GRU layers become liquid time-constant neuron "
    "layers initialised from their input and recurrent weights, ready for fine-tuning")
