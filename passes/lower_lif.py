"""lower-lif: rate conversion of a ReLU network into discrete integrate-and-fire neurons (snn.lif).

Every nn.relu becomes an IF neuron (β = 1, soft reset, u_0 = v0·θ) over T steps; synapses (matmul,
conv, bias additions, average pools, reshapes) stay the same ops, applied to all T·N rows of the
time-major value. Scales come from data-based normalization (mpc.snn.convert): λ per layer or per
channel, the max or a percentile of the ReLU's activations over the whole calibration set. A neuron
of scale λ gets threshold θ = λ, so a spike stands for the activation λ; the synapse after it gets its
input weights multiplied by λ (so it sees the activation, rate × λ) while biases stay as they are:
the membrane then integrates the source layer's pre-activation, and the rate times λ approaches
ReLU(pre-activation) (clipped at λ) with an error of about λ/T. u_0 = θ/2 turns the floor of rate
coding into a rounding (the count after T steps of a constant current I is ⌊T·I/θ + ½⌋).

Inputs are a constant current (encoded just before the first neuron: what precedes it runs once per
sample, on [N, ...]) or seeded Poisson spikes (encoded at the input). A max-pool right after a ReLU
on a constant current is exact before the neuron (max and ReLU commute and the current does not change
over time); elsewhere it becomes the spiking snn.maxpool. The graph output, a synapse's current,
is read out by membrane (snn.decode mode membrane: the mean input current over T, the source's logit).
A pruned weight (sp.mask from lbi-prune) is a synapse weight like any other: the scaled copy keeps its mask.

Options (`lower-lif{timesteps=32,norm=p99.9,granularity=layer}`; the lif target's --timesteps,
--norm and --norm-granularity set them): timesteps, norm (max | p99.9 | p99.99), granularity
(layer | channel), encoding (constant | poisson), v0, dt, seed (Poisson).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from mpc.calib import ChannelStats, capture, per_shard
from mpc.data import random_data
from mpc.errors import BadFlag, UnsupportedOp
from mpc.ir import Graph, Op, Value, make_op
from mpc.passmanager import register_pass
from mpc.snn.convert import Granularity, Norm, activation_scale, per_sample, pooled, scale_inputs


class Encoding(enum.Enum):
    """How inputs enter the spiking network."""

    CONSTANT = "constant"
    POISSON = "poisson"


@dataclass(frozen=True)
class LowerLIFOptions:
    """Options of lower-lif: steps, normalization statistic and granularity, input encoding, u_0/θ, dt."""

    timesteps: int = 32
    norm: Norm = Norm.P99_9
    granularity: Granularity = Granularity.LAYER
    encoding: Encoding = Encoding.CONSTANT
    v0: float = 0.5
    dt: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.timesteps <= 1_000_000:
            raise BadFlag(f"lower-lif: option timesteps must be an integer from 1 to 1000000, got {self.timesteps}")
        if not 0 <= self.v0 < 1:
            raise BadFlag(f"lower-lif: option v0 must be in [0, 1), got {self.v0}")
        if not self.dt > 0:
            raise BadFlag(f"lower-lif: option dt must be > 0, got {self.dt}")


@dataclass
class Slot:
    """A source value's replacement: the new value, whether it is time-major, the scale of its units
    (per sample; None: real-valued, scale 1) and, for a ReLU deferred past its max-pool, its input."""

    value: Value
    timed: bool = False
    scale: np.ndarray | None = None
    deferred: bool = False


SYNAPSES = ("nn.matmul", "nn.conv2d")
PASSIVE = ("nn.add", "nn.sub", "nn.avgpool2d")   # linear ops a time-major current passes through


class Lowering:
    """Rebuilds the graph's ops time-major, one source op at a time (see the module docstring)."""

    def __init__(self, graph: Graph, opts: LowerLIFOptions, lam: dict[str, np.ndarray]):
        self.graph, self.opts, self.lam = graph, opts, lam
        self.ops: list[Op] = []
        self.env: dict[int, Slot] = {}
        self.users = graph.users()
        self.layers: list[dict] = []

    def emit(self, kind: str, operands: list[Value], attrs, loc) -> Value:
        """Append a new op; its result."""
        op = make_op(self.graph, kind, operands, attrs, loc)
        self.ops.append(op)
        return op.result

    def timed(self, slot: Slot, loc) -> Value:
        """The slot's value as a time-major current (constant encoding on first need)."""
        if slot.timed:
            return slot.value
        enc = {"timesteps": self.opts.timesteps, "dt": self.opts.dt}
        slot.value, slot.timed = self.emit("snn.encode", [slot.value], enc, loc), True
        return slot.value

    def neuron(self, pre: Slot, op: Op, lam: np.ndarray, name: str) -> Slot:
        """An IF neuron of per-channel scale λ on the current `pre`."""
        x = self.timed(pre, op.loc)
        dtype = x.type.dtype.numpy
        theta = lam[:1] if np.all(lam == lam[0]) else lam   # one per layer: shape [1] (.npz keeps no 0-d arrays)
        th = self.graph.add_weight(f"{name}.theta", theta.astype(dtype))
        s = self.emit("snn.lif", [x, th], {"dt": self.opts.dt, "v0": self.opts.v0}, op.loc)
        self.layers.append({"layer": name, "neurons": int(np.prod(op.result.type.shape[1:])),
                            "theta_min": float(lam.min()), "theta_max": float(lam.max())})
        return Slot(s, True, per_sample(lam, tuple(op.result.type.shape[1:])))

    def run(self) -> None:
        """Lower every op, then read the outputs out by membrane."""
        for v in self.graph.inputs:
            self.env[id(v)] = Slot(v)
            if self.opts.encoding is Encoding.POISSON:
                enc = {"timesteps": self.opts.timesteps, "dt": self.opts.dt, "mode": "poisson", "seed": self.opts.seed}
                self.env[id(v)] = Slot(self.emit("snn.encode", [v], enc, None), True, np.ones(v.type.shape[1:]))
        for op in self.graph.ops:
            self.env[id(op.result)] = self.lower(op)
        outputs = []
        for v in self.graph.outputs:
            slot = self.env[id(v)]
            if slot.scale is not None:
                raise UnsupportedOp(v.producer.kind if v.producer else "input", v.producer.loc if v.producer else
                                    None, "the lif target reads the output out by membrane: it must be a synapse's "
                                    "current, not a ReLU")
            out = self.emit("snn.decode", [slot.value], {"mode": "membrane"}, v.producer.loc) if slot.timed \
                else slot.value
            outputs.append(out)
        self.graph.ops = self.ops
        for old, new in zip(self.graph.outputs, outputs):
            name, old.name = old.name, self.graph.fresh_name("dead")
            new.name = name
        self.graph.outputs = outputs

    def operand(self, v: Value) -> Slot:
        """The slot of an operand (weights map to themselves)."""
        return Slot(v) if v.is_weight else self.env[id(v)]

    def lower(self, op: Op) -> Slot:
        """The replacement slot of one source op."""
        args = [self.operand(v) for v in op.operands]
        if op.kind == "nn.relu":
            return self.relu(op, args[0])
        if op.kind == "nn.maxpool2d":
            return self.maxpool(op, args[0])
        if op.kind in SYNAPSES and (op.operands[1].is_weight or _masked_weight(op.operands[1])):
            return self.synapse(op, args)
        if op.kind in ("nn.flatten", "nn.reshape") and args[0].timed:
            return self.reshape(op, args[0])
        if not any(a.timed or a.scale is not None for a in args):
            return Slot(self.emit(op.kind, [a.value for a in args], op.attrs, op.loc))
        if op.kind == "nn.avgpool2d" or (op.kind in PASSIVE and all(a.scale is None for a in args)):
            s = args[0].scale
            timed = any(a.timed for a in args)
            out = self.emit(op.kind, [self.timed(a, op.loc) if timed and not a.value.is_weight else a.value
                                      for a in args], op.attrs, op.loc)
            return Slot(out, timed, None if s is None else pooled(s, tuple(out.type.shape[2:])))
        raise UnsupportedOp(op.kind, op.loc, "the lif target has no spiking form of this op on spikes")

    def relu(self, op: Op, pre: Slot) -> Slot:
        users = self.users.get(id(op.result), [])
        if not pre.timed and len(users) == 1 and users[0].kind == "nn.maxpool2d" and \
                op.result not in self.graph.outputs:
            return Slot(pre.value, deferred=True)   # pooled before the neuron: exact on a constant current
        return self.neuron(pre, op, self.lam[op.result.name], _layer_name(op))

    def maxpool(self, op: Op, x: Slot) -> Slot:
        if x.deferred:
            pooled_current = Slot(self.emit(op.kind, [x.value], op.attrs, op.loc))
            return self.neuron(pooled_current, op, self.lam[op.result.name], _layer_name(op.operands[0].producer))
        if not x.timed:
            return Slot(self.emit(op.kind, [x.value], op.attrs, op.loc))
        a = op.attrs
        if any(a.pads) or a.dilations != (1, 1) or a.ceil_mode:
            raise UnsupportedOp(op.kind, op.loc, "snn.maxpool takes no pads, dilations or ceil_mode")
        out = self.emit("snn.maxpool", [x.value], {"kernel": a.kernel, "strides": a.strides}, op.loc)
        return Slot(out, True, pooled(x.scale, tuple(out.type.shape[2:])))

    def synapse(self, op: Op, args: list[Slot]) -> Slot:
        x, w = args[0], args[1].value
        if x.scale is not None and not np.all(x.scale == 1):
            mask = None if op.operands[1].is_weight else op.operands[1].producer   # sp.mask(@w, @m)
            base = mask.operands[0] if mask else op.operands[1]
            arr = scale_inputs(op, self.graph.weights[base.name], x.scale)
            w = self.graph.add_weight(f"{base.name}.lif", arr)
            if mask:   # the scaled weight keeps its mask (the unscaled one's sp.mask is left to dce)
                w = self.emit("sp.mask", [w, mask.operands[1]], mask.attrs, mask.loc)
        operands = [x.value, w] + [a.value for a in args[2:]]
        return Slot(self.emit(op.kind, operands, op.attrs, op.loc), x.timed)

    def reshape(self, op: Op, x: Slot) -> Slot:
        shape = op.result.type.shape[1:]
        out = self.emit("nn.reshape", [x.value], {"shape": (0, 0, -1) if len(shape) == 1 else (0, 0) + tuple(shape)},
                        op.loc)
        return Slot(out, True, None if x.scale is None else x.scale.reshape(out.type.shape[2:]))


def _masked_weight(v: Value) -> bool:
    """Whether v is a pruned weight, sp.mask(@w, @mask): a synapse like any other."""
    p = v.producer
    return p is not None and p.kind == "sp.mask" and all(u.is_weight for u in p.operands)


def _layer_name(op: Op) -> str:
    """A stable layer name: the first weight of the synapse feeding the ReLU, else the value's name."""
    cur = op
    for _ in range(4):
        ws = [v for v in cur.operands if v.is_weight]
        if cur.kind in SYNAPSES and ws:
            return ws[0].name.split(".weight")[0]
        nxt = [v.producer for v in cur.operands if not v.is_weight and v.producer is not None]
        if not nxt:
            break
        cur = nxt[0]
    return op.result.name


def neuron_scales(graph: Graph, data, opts) -> dict[str, np.ndarray]:
    """λ per channel of every ReLU (and of every max-pool right after one) over the calibration set."""
    picks = [op.result for op in graph.ops if op.kind == "nn.relu"]
    picks += [op.result for op in graph.ops if op.kind == "nn.maxpool2d" and op.operands[0].producer is not None
              and op.operands[0].producer.kind == "nn.relu"]
    if not picks:
        return {}
    # per shard (a --calib folder), each channel's samples kept sorted and merged: the same λ as on all samples
    stats = per_shard(data, lambda shard: capture(graph, shard, picks, dtype=np.float64), ChannelStats.of)
    return {name: activation_scale(s.as_samples(), opts.norm, opts.granularity) for name, s in stats.items()}


@register_pass("lower-lif", summary="rate-convert a ReLU network to IF neurons (snn.lif) with data-based normalization",
               options=LowerLIFOptions, needs_data=True)
def lower_lif(graph: Graph, ctx, opts: LowerLIFOptions) -> dict:
    """Rewrite in place; statistics count neurons and layers."""
    data = ctx.dataset if ctx.dataset is not None else random_data(graph, 256, ctx.seed)
    low = Lowering(graph, opts, neuron_scales(graph, data, opts))
    low.run()
    ctx.report.section("LIF conversion", {"timesteps": opts.timesteps, "norm": opts.norm.value,
                                          "granularity": opts.granularity.value, "encoding": opts.encoding.value,
                                          "layers": low.layers})
    return {"layers": len(low.layers), "neurons": sum(r["neurons"] for r in low.layers)}
