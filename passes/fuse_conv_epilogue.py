"""`fuse-conv-epilogue`: the NumPy backend's lowering onto the kernels model.py calls.

1. Each `nn.conv2d` [-> `nn.relu`] [-> `nn.maxpool2d`] chain becomes one `np.conv2d_fused`, the
   compiled convolution with the ReLU and max-pool in its epilogue (one pass over the conv's output
   instead of three). An op joins the chain when the previous result has it as its only user and
   is not a graph output; a conv with nothing to fuse stays `nn.conv2d`. The fused op yields the
   last op's result and carries its location (what fold-batchnorm does too).
2. When the graph runs compiled kernels (a conv or max-pool), each `nn.matmul` becomes
   `np.matmul_fast`: model.py then runs its dense layers on numba's thread pool as well, since
   mixing BLAS's own pool with numba's oversubscribes the cores.
Both rewrites keep the numbers exactly (the np ops' reference kernels compose the nn ones).
Standard backend lowering, not part of the MP method.
"""
from __future__ import annotations

from mpc.ir import Graph, Op, Rewriter, apply_patterns, erase, insert_before, make_op, replace_all_uses
from mpc.ir.ops_np import POOL_FIELDS
from mpc.passmanager import register_pass

COMPILED = ("nn.conv2d", "nn.maxpool2d", "np.conv2d_fused")   # kinds model.py runs on numba's threads


def _sole_user(graph: Graph, op: Op, kind: str) -> Op | None:
    """The only user of op's result when it has kind `kind` and the result is not a graph output."""
    if any(v is op.result for v in graph.outputs):
        return None
    users = graph.users().get(id(op.result), [])
    return users[0] if len(users) == 1 and users[0].kind == kind else None


def _chain(graph: Graph, conv: Op) -> list[Op]:
    """conv, then the relu and/or max-pool that fuse into its epilogue."""
    chain = [conv]
    for kind in ("nn.relu", "nn.maxpool2d"):
        nxt = _sole_user(graph, chain[-1], kind)
        if nxt is not None:
            chain.append(nxt)
    return chain


def _fuse(graph: Graph, chain: list[Op]) -> None:
    """Replace a conv chain by one np.conv2d_fused placed where the conv was."""
    conv, rest = chain[0], chain[1:]
    attrs = {f: getattr(conv.attrs, f) for f in ("strides", "pads", "dilations", "group")}
    attrs["relu"] = any(op.kind == "nn.relu" for op in rest)
    pool = rest[-1] if rest[-1].kind == "nn.maxpool2d" else None
    if pool is not None:
        attrs.update({f"pool_{f}": getattr(pool.attrs, f) for f in POOL_FIELDS})
    fused = make_op(graph, "np.conv2d_fused", conv.operands, attrs, chain[-1].loc)
    insert_before(graph, conv, [fused])
    replace_all_uses(graph, chain[-1].result, fused.result)
    for op in reversed(chain):
        erase(graph, op)


@register_pass("fuse-conv-epilogue", summary="numpy lowering: conv+relu+maxpool into np.conv2d_fused, "
                                             "matmul to np.matmul_fast beside compiled kernels")
def fuse_conv_epilogue(graph: Graph, ctx) -> dict:
    """Fuse conv epilogues, then pick the threaded matmul; returns {'fused', 'matmul_fast'}."""
    fused = 0
    for conv in [op for op in graph.ops if op.kind == "nn.conv2d"]:
        chain = _chain(graph, conv)
        if len(chain) > 1:
            _fuse(graph, chain)
            fused += 1
    if not any(op.kind in COMPILED for op in graph.ops):
        return {"fused": fused, "matmul_fast": 0}

    def fast(op: Op, rw: Rewriter):
        return rw.op("np.matmul_fast", op.operands)

    return {"fused": fused, "matmul_fast": apply_patterns(graph, {"nn.matmul": fast})}
