"""Between the IR and mpc.hop.dyadic: the HopNet of a graph's hop.relax op, and writing a trained one back."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from mpc.errors import BadInput
from mpc.hop import kernels as HK
from mpc.hop.dyadic import HopNet, damping_for
from mpc.ir import Graph, Op
from mpc.ir.ops_hop import Schedule, couplings


def relax_op(graph: Graph) -> Op:
    """The one hop.relax op of a graph lowered by lower-hopfield; BadInput otherwise."""
    ops = [op for op in graph.ops if op.kind == "hop.relax"]
    if len(ops) != 1:
        raise BadInput(f"expected one hop.relax op (a graph lowered for --target hopfield), found {len(ops)}")
    return ops[0]


def net_of(graph: Graph, op: Op) -> HopNet:
    """The HopNet of a hop.relax op whose blocks are W_lam's (theta_k at k+1<k); BadInput otherwise."""
    a = op.attrs
    arrays = [np.asarray(graph.weights[v.name]) for v in op.operands[1:]]
    pairs = couplings(a)
    by_pair = dict(zip(pairs, arrays[2:]))
    missing = [f"{k + 1}<{k}" for k in range(len(a.sizes) - 1) if (k + 1, k) not in by_pair]
    if missing:
        raise BadInput(f"hop.relax at {op.loc}: no feedforward block {missing[0]}: not a layered W_lambda net")
    thetas = tuple(by_pair[(k + 1, k)] for k in range(len(a.sizes) - 1))
    biases = tuple(HK.hop_split(arrays[1], a.sizes))
    return HopNet(arrays[0], thetas, biases, tuple(f.value for f in a.acts), a.lam)


def write_net(graph: Graph, op: Op, net: HopNet, suffix: str) -> None:
    """Point `op` at new weights (`<name>.<suffix>`) holding `net`'s W_lam blocks; drop the unused old ones.
    For lambda other than 1/2 and 1 the op also gets the damped Jacobi schedule training relaxed with."""
    pairs, blocks = net.blocks()
    dtype = op.operands[0].type.dtype.numpy
    arrays = [net.theta0, np.concatenate(net.biases)] + list(blocks)
    names = ["hop.theta0", "hop.bias"] + [f"hop.w{k}_{j}" for k, j in pairs]
    if [f"{k}<{j}" for k, j in pairs] != list(op.attrs.blocks):
        raise BadInput(f"hop.relax at {op.loc}: its blocks {list(op.attrs.blocks)} are not W_lambda's")
    old = [v.name for v in op.operands[1:]]
    op.operands[1:] = [graph.add_weight(f"{n}.{suffix}", np.asarray(a, dtype)) for n, a in zip(names, arrays)]
    if net.lam not in (0.5, 1.0):   # trained with damped Jacobi iterations: the exported op relaxes the same way
        op.attrs = dataclasses.replace(op.attrs, schedule=Schedule.JACOBI, damping=damping_for(net),
                                       max_iter=max(op.attrs.max_iter, 1000))
    used = set(graph.used_weights())
    for name in old:
        if name not in used:
            graph.remove_weight(name)


def mlp_graph(sizes: tuple[int, ...], seed: int = 0, dtype=np.float32, name: str = "mlp") -> Graph:
    """A freshly initialised ReLU MLP (matmul + bias + relu, linear output) with torch.nn.Linear's init
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) drawn from a seeded NumPy generator: the common start of the
    training comparisons."""
    from mpc.ir import parse
    rng = np.random.default_rng(seed)
    t = "f32" if np.dtype(dtype) == np.float32 else "f64"
    weights, decls, ops, cur = {}, [], [], "%x"
    last = len(sizes) - 2
    for k, (m, n) in enumerate(itertools.pairwise(sizes)):
        bound = 1 / np.sqrt(m)
        weights[f"fc{k}.w"] = rng.uniform(-bound, bound, (m, n)).astype(dtype)
        weights[f"fc{k}.b"] = rng.uniform(-bound, bound, n).astype(dtype)
        decls += [f"  weight @fc{k}.w : {t}[{m},{n}]", f"  weight @fc{k}.b : {t}[{n}]"]
        ops.append(f"  %m{k} = nn.matmul({cur}, @fc{k}.w) : {t}[N,{n}]")
        ops.append(f"  {'%y' if k == last else f'%a{k}'} = nn.add(%m{k}, @fc{k}.b) : {t}[N,{n}]")
        if k < last:
            ops.append(f"  %h{k} = nn.relu(%a{k}) : {t}[N,{n}]")
            cur = f"%h{k}"
    head = f"graph @{name}(%x: {t}[N,{sizes[0]}]) -> (%y: {t}[N,{sizes[-1]}]) {{"
    return parse("\n".join([head, *decls, *ops, "}"]) + "\n", weights)
