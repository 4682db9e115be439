"""NIR backend (`--emit nir`): a converted lif graph as `model.nir`, the Neuromorphic Intermediate
Representation (J. E. Pedersen et al., "Neuromorphic intermediate representation: a unified
instruction set for interoperable brain-inspired computing", Nat. Commun. 2024; package `nir` >= 1.0.8).

NIR describes continuous-time dynamics; mpc simulates discrete steps of length dt (written in the graph
metadata as `mpc.dt`). The translation, for forward-Euler integration of NIR's equations with the
input held constant over each step:
- IF (β = 1): NIR v̇ = R·I gives v_t = v_{t−1} + dt·R·I_t; mpc's u_t = u_{t−1} + x_t, so r = 1/dt.
- LIF (β < 1): NIR τ·v̇ = (v_leak − v) + R·I gives v_t = (1 − dt/τ)·v_{t−1} + (dt/τ)·R·I_t; matching
  β = 1 − dt/τ and (dt/τ)·R = 1: τ = dt/(1 − β), r = 1/(1 − β), v_leak = 0.
- Threshold: NIR fires when v > v_threshold, mpc when u >= θ; for floats u >= θ is u > nextafter(θ, −∞),
  so v_threshold = nextafter(θ, −∞) in the weights' dtype (per channel when θ is).
- Reset: NIR 1.0.6+ resets to v_reset. mpc's reset-to-zero is exactly v_reset = 0. mpc's soft reset
  (u −= θ) has no NIR field; it is exported with v_reset = 0 and `mpc.reset = "subtract"` in the
  graph metadata, and the initial membrane u_0 = v0·θ (NIR has no initial state) as `mpc.v0` (both
  graph-wide: a graph whose LIF layers differ in reset mode or v0 is refused, naming the layer): a NIR
  consumer that follows only the node equations simulates reset-to-zero from rest, which equals mpc
  exactly only for `reset = zero` and `v0 = 0` (lower-lif{v0=0.0} with --passes, and a graph with
  reset = zero). The metadata also says `mpc.timesteps` and `mpc.readout` (the output is the last
  synapse's current; mpc reads the mean over T, which a consumer computes from the Output stream).
- Synapses: nn.matmul (+ bias add) → Affine (weight transposed to [out, in]) or Linear;
  nn.conv2d → Conv2d (symmetric pads only); nn.avgpool2d → AvgPool2d; nn.reshape/flatten of a
  time-major value → Flatten(start_dim = 0: NIR shapes carry no batch or time axis).
- Input: the constant current of snn.encode is NIR's input stream held for T steps; what runs before the
  encoder (the first synapse on the constant input) is exported as ordinary nodes before the first neuron.
NIR cannot express the spiking max-pool (snn.maxpool), n-LIF neurons (snn.nlif), Poisson or
time-to-first-spike encoders: they are refused with one line naming the op.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from mpc.backends.base import Backend, Emitted

from mpc.errors import BadInput, UnsupportedOp
from mpc.ir import Graph, Op

NO_NIR = {"snn.maxpool": "NIR has no spiking max-pool (export an average-pool model)",
          "snn.nlif": "NIR has no n-LIF neuron (time-to-first-spike with an exponential synaptic kernel)",
          "nn.maxpool2d": "NIR has no max-pool of a spiking network"}
PASS_THROUGH = ("snn.decode",)


def _refuse(op, a):
    raise UnsupportedOp(op.kind, op.loc, f"cannot be exported to NIR: {NO_NIR[op.kind]}")


class _Builder:
    """Walks the lowered graph once, building NIR nodes named after the ops' results."""

    def __init__(self, graph: Graph):
        import nir
        self.nir, self.g = nir, graph
        self.nodes, self.edges, self.src = {}, [], {}
        self.dt, self.meta = None, {}

    def node_of(self, v) -> str:
        return self.src[id(v)]

    def add(self, op: Op, node, name: str | None = None) -> None:
        name = name or f"n{len(self.nodes)}_{op.kind.split('.')[1]}"
        self.nodes[name] = node
        self.edges.append((self.node_of(op.operands[0]), name))
        self.src[id(op.result)] = name

    def w(self, v) -> np.ndarray:
        return np.array(self.g.weights[v.name])

    def build(self):
        nir = self.nir
        for v in self.g.inputs:
            self.nodes[v.name] = nir.Input(input_type={"input": np.array(v.type.shape[1:])})
            self.src[id(v)] = v.name
        users = self.g.users()
        for op in self.g.ops:
            if op.kind in NO_NIR:
                _refuse(op, None)
            getattr(self, "op_" + op.kind.replace(".", "_"), self.unsupported)(op, users)
        for v in self.g.outputs:
            self.nodes["output"] = nir.Output(output_type={"output": np.array(v.type.shape[1:])})
            self.edges.append((self.node_of(v), "output"))
        return nir.NIRGraph(self.nodes, sorted(self.edges), metadata=self.meta | {"mpc.dt": float(self.dt or 1.0)},
                            type_check=False)

    def unsupported(self, op, users):
        raise UnsupportedOp(op.kind, op.loc, "the nir backend has no NIR node for this op kind")

    def op_nn_matmul(self, op, users):
        w = self.w(op.operands[1]).T
        nxt = users.get(id(op.result), [])
        if len(nxt) == 1 and nxt[0].kind == "nn.add" and nxt[0].operands[1].is_weight:
            b = np.broadcast_to(self.w(nxt[0].operands[1]), w.shape[:1]).copy()
            self.add(op, self.nir.Affine(weight=w, bias=b))
            self.src[id(nxt[0].result)] = self.src[id(op.result)]
            self.skip = nxt[0]
        else:
            self.add(op, self.nir.Linear(weight=w))

    def op_nn_add(self, op, users):
        if getattr(self, "skip", None) is op:
            return
        self.unsupported(op, users)

    def op_nn_conv2d(self, op, users):
        a = op.attrs
        if a.pads[:2] != a.pads[2:]:
            raise UnsupportedOp(op.kind, op.loc, f"NIR Conv2d pads symmetrically; pads {list(a.pads)} are not")
        w = self.w(op.operands[1])
        b = self.w(op.operands[2]) if len(op.operands) == 3 else np.zeros(w.shape[0], w.dtype)
        self.add(op, self.nir.Conv2d(input_shape=tuple(op.operands[0].type.shape[-2:]), weight=w,
                                     stride=tuple(a.strides), padding=tuple(a.pads[:2]),
                                     dilation=tuple(a.dilations), groups=a.group, bias=b))

    def op_nn_avgpool2d(self, op, users):
        a = op.attrs
        self.add(op, self.nir.AvgPool2d(kernel_size=np.array(a.kernel), stride=np.array(a.strides),
                                        padding=np.array(a.pads[:2])))

    def op_nn_reshape(self, op, users):
        shape = op.operands[0].type.shape
        self.add(op, self.nir.Flatten(input_type={"input": np.array(shape[2:])}, start_dim=0, end_dim=-1))

    op_nn_flatten = op_nn_reshape

    def op_snn_encode(self, op, users):
        if op.attrs.mode.value != "constant":
            raise UnsupportedOp(op.kind, op.loc, f"NIR has no {op.attrs.mode.value} encoder: export constant input")
        self.meta["mpc.timesteps"] = op.attrs.timesteps
        self.src[id(op.result)] = self.node_of(op.operands[0])

    def op_snn_decode(self, op, users):
        self.meta["mpc.readout"] = f"{op.attrs.mode.value} over mpc.timesteps steps of the output stream"
        self.src[id(op.result)] = self.node_of(op.operands[0])

    def op_snn_lif(self, op, users):
        a = op.attrs
        self.dt = a.dt
        theta = self.w(op.operands[1])
        shape = tuple(op.result.type.shape[2:])
        th = np.broadcast_to(theta.reshape((-1,) + (1,) * (len(shape) - 1)) if theta.size > 1 else theta.reshape(()),
                             shape)
        vth = np.nextafter(th, np.asarray(-np.inf, th.dtype)).astype(th.dtype)
        zero = np.zeros(shape, th.dtype)
        reset = "subtract" if a.reset.value == "soft" else "zero"
        for key, value in (("mpc.reset", reset), ("mpc.v0", float(a.v0))):   # graph-wide: one value for all layers
            if self.meta.setdefault(key, value) != value:
                raise UnsupportedOp(op.kind, op.loc, f"{key} is one value for the whole NIR graph: this layer has "
                                                     f"{value!r}, an earlier one {self.meta[key]!r}")
        if a.refractory:
            raise UnsupportedOp(op.kind, op.loc, "NIR has no refractory period")
        if a.beta == 1.0:
            node = self.nir.IF(r=np.full(shape, 1.0 / a.dt, th.dtype), v_threshold=vth, v_reset=zero)
        else:
            tau = a.dt / (1.0 - a.beta)
            node = self.nir.LIF(tau=np.full(shape, tau, th.dtype), r=np.full(shape, 1.0 / (1.0 - a.beta), th.dtype),
                                v_leak=zero, v_threshold=vth, v_reset=zero)
        self.add(op, node)


def write(graph: Graph, folder: Path, target: str = "float") -> Emitted:
    """Write model.nir for a converted graph into `folder`."""
    try:
        import nir
    except ImportError:
        raise BadInput("--emit nir needs the nir package: pip install 'mpc[nir]'") from None
    g = _Builder(graph).build()
    nir.write(Path(folder) / "model.nir", g)
    meta = {k: v for k, v in sorted(g.metadata.items())}
    return Emitted(("model.nir",), {"NIR export": meta})


RENDER = {k: _refuse for k in NO_NIR} | {k: (lambda op, a: "") for k in (
    "nn.matmul", "nn.add", "nn.conv2d", "nn.avgpool2d", "nn.reshape", "nn.flatten", "snn.encode", "snn.decode",
    "snn.lif")}
BACKEND = Backend("nir", "dce", RENDER, write)
