"""lower-nlif: the exact time-to-first-spike mapping of a ReLU network onto non-leaky n-LIF neurons.

The n-LIF neuron (A. R. Nair et al., margin-propagation thesis, IISc; the neuron model of their
n-LIF/MP work): a spike of weight w at time t_j adds K·w·(1 − e^{−(t − t_j)/τ}) to the membrane. Read
at a time R after every input, V(R) = Σ_j w_j φ_j with φ_j = K(1 − e^{−(R − t_j)/τ}). A value
x ∈ [0, 1] sent as a spike at t = R + τ·ln(1 − x/K) has φ = x exactly, so V(R) = wᵀx: the neuron
computes the dense layer exactly at R, and its own firing time can encode its ReLU output for the next
layer. K = 1/(1 − e^{−W/τ}) makes [0, 1] fit one window of length W.

Chaining scheme. Time is cut into windows of W/dt steps. The input (layer 0) fires inside window 0
(snn.encode mode ttfs); neuron layer l reads its membrane at the end of window l − 1 (step l·W/dt),
adds its bias and, if the result y is positive, fires once inside window l, at the step that makes its
kernel value at the next readout ((l + 1)·W/dt) equal y (snn.nlif). The layer after the last neuron
layer reads the spikes' kernel values at its readout (snn.decode mode ttfs) and applies its synapse
to them: the logits are that layer's membrane V(R). Max-pools become snn.maxpool, which on one spike
per unit passes the earliest spike, i.e. the max of the encoded values (ReLU and max commute).

Scales: values must lie in [0, 1]: λ per layer (or channel) is the max of the ReLU's activations over
the calibration set (mpc.snn.convert); layer l's weights become W·λ_{l−1}/λ_l and its bias b/λ_l
(λ_0 = 1: inputs must lie in [0, 1]), the readout layer's weights W·λ_L. A value above its λ on
other data saturates at 1. The only other error is the rounding of each spike time to the step
grid: a kernel value is off by at most K·dt/(2τ), so the error falls to 0 with dt.

Options (`lower-nlif{dt=0.01,tau=1.0,window=4.0,norm=max}`): dt, tau, window, norm, granularity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.calib import capture
from mpc.data import random_data
from mpc.errors import BadFlag, UnsupportedOp
from mpc.ir import Graph, Op, Value, make_op
from mpc.ir.ops_snn import window_steps
from mpc.passmanager import register_pass
from mpc.snn.convert import Granularity, Norm, activation_scale, per_sample, pooled, scale_inputs

SYNAPSES = ("nn.matmul", "nn.conv2d")


@dataclass(frozen=True)
class LowerNLIFOptions:
    """Options of lower-nlif: step dt, synaptic time constant τ, window length, normalization."""

    dt: float = 0.01
    tau: float = 1.0
    window: float = 4.0
    norm: Norm = Norm.MAX
    granularity: Granularity = Granularity.LAYER

    def __post_init__(self):
        for name in ("dt", "tau", "window"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise BadFlag(f"lower-nlif: option {name} must be a finite number > 0, got {v!r}")
        if not 1 <= window_steps(self.dt, self.window) <= 100_000:
            raise BadFlag(f"lower-nlif: window/dt must be from 1 to 100000 steps, got {self.window / self.dt:g}")


@dataclass
class Slot:
    """A source value's replacement: value, time-major or not, per-sample scale (None: 1), the bias
    waiting for the next neuron (time-major currents carry no bias), the neuron layer that produced it."""

    value: Value
    timed: bool = False
    scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    layer: int = 0


class Lowering:
    """Rebuilds the graph's ops in the time code, one source op at a time (see the module docstring)."""

    def __init__(self, graph: Graph, opts: LowerNLIFOptions, lam: dict[str, np.ndarray]):
        self.graph, self.opts, self.lam = graph, opts, lam
        self.ops: list[Op] = []
        self.env: dict[int, Slot] = {}
        self.sw = window_steps(opts.dt, opts.window)
        self.depth = sum(op.kind == "nn.relu" for op in graph.ops)
        self.steps = (self.depth + 1) * self.sw + 1
        self.feeds_relu = _feeds_relu(graph)
        self.layers = 0

    def emit(self, kind: str, operands: list[Value], attrs, loc) -> Value:
        op = make_op(self.graph, kind, operands, attrs, loc)
        self.ops.append(op)
        return op.result

    def code(self) -> dict:
        """The time-code attributes shared by encode, nlif and decode."""
        return {"dt": self.opts.dt, "tau": self.opts.tau, "window": self.opts.window}

    def run(self) -> None:
        for v in self.graph.inputs:
            enc = {"timesteps": self.steps, "mode": "ttfs"} | self.code()
            self.env[id(v)] = Slot(self.emit("snn.encode", [v], enc, None), True, np.ones(v.type.shape[1:]))
        for op in self.graph.ops:
            self.env[id(op.result)] = self.lower(op)
        outputs = []
        for v in self.graph.outputs:
            slot = self.env[id(v)]
            if slot.timed or slot.bias is not None:
                raise UnsupportedOp(v.producer.kind, v.producer.loc, "the nlif target reads out a dense layer after "
                                    "the last ReLU")
            outputs.append(slot.value)
        self.graph.ops = self.ops
        for old, new in zip(self.graph.outputs, outputs):
            name, old.name = old.name, self.graph.fresh_name("dead")
            new.name = name
        self.graph.outputs = outputs

    def lower(self, op: Op) -> Slot:
        args = [Slot(v) if v.is_weight else self.env[id(v)] for v in op.operands]
        x = args[0]
        if not x.timed:
            return Slot(self.emit(op.kind, [a.value for a in args], op.attrs, op.loc))
        if op.kind in SYNAPSES and op.operands[1].is_weight:
            return self.synapse(op, args)
        if op.kind == "nn.add" and op.operands[1].is_weight and x.scale is None:
            b = np.broadcast_to(self.graph.weights[op.operands[1].name], op.result.type.shape[-1:]).astype(np.float64)
            return Slot(x.value, True, None, b + (0 if x.bias is None else x.bias), x.layer)
        if op.kind == "nn.relu":
            return self.neuron(op, x)
        if op.kind == "nn.maxpool2d" and x.scale is not None:
            a = op.attrs
            if any(a.pads) or a.dilations != (1, 1) or a.ceil_mode:
                raise UnsupportedOp(op.kind, op.loc, "snn.maxpool takes no pads, dilations or ceil_mode")
            out = self.emit("snn.maxpool", [x.value], {"kernel": a.kernel, "strides": a.strides}, op.loc)
            return Slot(out, True, pooled(x.scale, tuple(out.type.shape[2:])), None, x.layer)
        if op.kind in ("nn.flatten", "nn.reshape") and x.bias is None:
            shape = op.result.type.shape[1:]
            out = self.emit("nn.reshape", [x.value], {"shape": (0, 0, -1) if len(shape) == 1 else (0, 0) + tuple(shape)},
                            op.loc)
            return Slot(out, True, x.scale.reshape(out.type.shape[2:]), None, x.layer)
        raise UnsupportedOp(op.kind, op.loc, "the nlif target has no time-to-first-spike form of this op")

    def synapse(self, op: Op, args: list[Slot]) -> Slot:
        x, w = args[0], op.operands[1]
        if x.scale is None or x.bias is not None:
            raise UnsupportedOp(op.kind, op.loc, "the nlif target needs a ReLU between synapses")
        arr = scale_inputs(op, self.graph.weights[w.name], x.scale)
        bias = self.graph.weights[op.operands[2].name].astype(np.float64) if len(op.operands) == 3 else None
        if id(op.result) not in self.feeds_relu:   # the readout layer: decode, then the dense synapse
            dec = {"mode": "ttfs", "readout": (x.layer + 1) * self.sw} | self.code()
            vals = self.emit("snn.decode", [x.value], dec, op.loc)
            operands = [vals, self.graph.add_weight(f"{w.name}.nlif", arr)] + [a.value for a in args[2:]]
            return Slot(self.emit(op.kind, operands, op.attrs, op.loc))
        wv = self.graph.add_weight(f"{w.name}.nlif", arr)
        out = self.emit(op.kind, [x.value, wv], op.attrs, op.loc)
        return Slot(out, True, None, bias, x.layer)

    def neuron(self, op: Op, x: Slot) -> Slot:
        """An n-LIF layer: its synapse's weights and bias divided by λ, fed to snn.nlif."""
        lam = self.lam[op.result.name]
        cur = x.value.producer
        if cur is None or cur.kind not in SYNAPSES:
            raise UnsupportedOp(op.kind, op.loc, "the nlif target needs a matmul or conv (+ bias) before each ReLU")
        name = cur.operands[1].name   # this layer's new weight (inputs scaled): outputs divided by λ too
        w = self.graph.weights[name]
        div = lam.reshape(-1, 1, 1, 1) if cur.kind == "nn.conv2d" else lam.reshape(1, -1)
        self.graph.remove_weight(name)
        cur.operands[1] = self.graph.add_weight(name, (w.astype(np.float64) / div).astype(w.dtype), exact=True)
        bias = np.zeros(lam.size) if x.bias is None else x.bias
        b = self.graph.add_weight(f"{name}_bias", (bias / lam).astype(w.dtype))
        self.layers += 1
        out = self.emit("snn.nlif", [x.value, b], self.code() | {"layer": self.layers}, op.loc)
        return Slot(out, True, per_sample(lam, tuple(op.result.type.shape[1:])), None, self.layers)


def _feeds_relu(graph: Graph) -> set[int]:
    """Ids of values from which a ReLU is reachable."""
    hit: set[int] = set()
    for op in reversed(graph.ops):
        if op.kind == "nn.relu" or any(id(r) in hit for r in op.results):
            hit.update(id(v) for v in op.operands if not v.is_weight)
    return hit


@register_pass("lower-nlif", summary="map a ReLU network exactly onto n-LIF neurons in time-to-first-spike code",
               options=LowerNLIFOptions, needs_data=True)
def lower_nlif(graph: Graph, ctx, opts: LowerNLIFOptions) -> dict:
    """Rewrite in place; statistics count layers and time steps."""
    data = ctx.dataset if ctx.dataset is not None else random_data(graph, 256, ctx.seed)
    for v in graph.inputs:
        a = data.feeds[v.name]
        if a.min(initial=0) < 0 or a.max(initial=0) > 1:
            raise UnsupportedOp("input", v.producer.loc if v.producer else _loc(graph),
                                f"the nlif target codes inputs in [0, 1]; '{v.name}' spans "
                                f"[{a.min():g}, {a.max():g}] on the calibration data")
    picks = [op.result for op in graph.ops if op.kind == "nn.relu"]
    acts = capture(graph, data, picks, dtype=np.float64) if picks else {}
    lam = {k: activation_scale(a, opts.norm, opts.granularity) for k, a in acts.items()}
    low = Lowering(graph, opts, lam)
    low.run()
    ctx.report.section("n-LIF conversion", {"dt": opts.dt, "tau": opts.tau, "window": opts.window,
                                            "steps": low.steps, "layers": low.layers})
    return {"layers": low.layers, "steps": low.steps}


def _loc(graph: Graph):
    from mpc.errors import UNKNOWN
    return graph.ops[0].loc if graph.ops else UNKNOWN
