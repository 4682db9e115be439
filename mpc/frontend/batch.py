"""A static batch of 1 imported as a symbolic batch.

torch.onnx.export without dynamic_axes writes every input with a leading dim of 1. The importer
reads that 1 as a batch dim `N` when every input has it (unless --static-batch), so that data of
any size flows through the converted graph. That is only sound where the graph treats dim 0 as
the batch: `check_batch` walks the imported graph and refuses (with the --static-batch hint) any
op that moves, mixes or drops the batch: a reshape that folds it into features, a softmax, concat
or transpose over axis 0, a product that contracts over it.
"""
from __future__ import annotations

from mpc.errors import BadModel
from mpc.ir import Graph, Op

HINT = "convert with --static-batch to keep the batch of 1"


def batch_dim(leading_dims: list[int | str | None], taken: set[str]) -> str | None:
    """The symbol for the batch when every input's leading dim is the literal 1, else None."""
    if not leading_dims or any(d != 1 for d in leading_dims):
        return None
    name, k = "N", 0
    while name in taken:
        k += 1
        name = f"N{k}"
    return name


def _axis_zero(op: Op) -> bool:
    """True when a softmax, concat, flatten, transpose, squeeze or unsqueeze acts on axis 0."""
    a, rank = op.attrs, op.operands[0].type.rank
    if op.kind in ("nn.softmax", "nn.concat"):
        return a.axis % max(rank, 1) == 0
    if op.kind == "nn.flatten":
        return a.axis == 0
    if op.kind == "nn.transpose":
        return a.perm[0] != 0
    if op.kind in ("nn.squeeze", "nn.unsqueeze"):
        return 0 in a.axes
    return False


def _contracts_batch(op: Op, n: str) -> bool:
    """True when a product sums over the batch (it sits in a contracted position)."""
    has = [bool(v.type.shape) and v.type.shape[0] == n for v in op.operands]
    if op.kind == "nn.gemm":
        return (has[0] and op.attrs.trans_a) or has[1]
    if op.kind == "nn.matmul":
        return (has[0] and op.operands[0].type.rank < 2) or (has[1] and op.operands[1].type.rank < 3)
    if op.kind == "mp.dot":
        return (has[0] and op.operands[0].type.rank < 2) or has[1]
    return any(has[1:]) and op.kind in ("nn.conv2d", "mp.conv2d")


def problem(op: Op, n: str) -> str | None:
    """Why `op` does not keep `n` as a per-sample batch dim, or None when it does."""
    if not any(n in v.type.shape for v in op.operands):
        return None
    for v in [*op.operands, *op.results]:
        if n in v.type.shape[1:]:
            return f"value %{v.name} {v.type} has the batch off axis 0"
    for r in op.results:
        if not r.type.shape or r.type.shape[0] != n:
            return f"its result {r.type} drops the batch"
    if _axis_zero(op):
        return "it acts along axis 0, the batch"
    if _contracts_batch(op, n):
        return "it sums over the batch"
    return None


def check_batch(graph: Graph, n: str, label: str) -> None:
    """Refuse a graph that does not keep the symbolic batch `n` per sample (see the module doc)."""
    for op in graph.ops:
        why = problem(op, n)
        if why is not None:
            raise BadModel(label, f"the model has a static batch of 1 that mpc reads as a batch dim, but node "
                                  f"'{op.loc.node}' ({op.kind}) does not follow it: {why}; {HINT}")
