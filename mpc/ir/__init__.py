"""mpc's IR: graph core, op declarations, text form, verifier, interpreter, rewrite primitives.

Other code imports from `mpc.ir` only. Op families are imported here by an explicit list.
"""
from mpc.ir import (  # noqa: F401  (op families: register nn.*, mp.*, np.*, hop.*, fx.*, snn.*, sp.* kinds)
           ops_fx,
           ops_fx_snn,
           ops_hop,
           ops_hw,
           ops_hw_snn,
           ops_mp,
           ops_nn,
           ops_nn_spatial,
           ops_nn_tensor,
           ops_np,
           ops_rnn,
           ops_snn,
           ops_snn_chain,
           ops_snn_event,
           ops_sparse,
)
from mpc.ir.core import Graph, Op, Value, clone, sanitize
from mpc.ir.interp import apply, check_feeds, run
from mpc.ir.opdefs import (
           TRAITS,
           InferError,
           KernelContext,
           NoAttrs,
           OpDef,
           define,
           fresh_registry,
           known_kinds,
           lookup,
)
from mpc.ir.parser import parse
from mpc.ir.printer import print_graph
from mpc.ir.rewrite import (
           Rewriter,
           apply_patterns,
           erase,
           insert_before,
           make_op,
           replace_all_uses,
           with_attrs,
)
from mpc.ir.types import DType, TensorType
from mpc.ir.verify import verify_graph

FAMILIES = ["nn", "mp", "np", "hop", "fx", "snn", "sp", "hw"]

__all__ = [
           "TRAITS",
           "DType",
           "Graph",
           "InferError",
           "KernelContext",
           "NoAttrs",
           "Op",
           "OpDef",
           "Rewriter",
           "TensorType",
           "Value",
           "apply",
           "apply_patterns",
           "check_feeds",
           "clone",
           "define",
           "erase",
           "fresh_registry",
           "insert_before",
           "known_kinds",
           "lookup",
           "make_op",
           "parse",
           "print_graph",
           "replace_all_uses",
           "run",
           "sanitize",
           "verify_graph",
           "with_attrs",
]
