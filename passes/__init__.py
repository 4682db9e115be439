"""mpc's passes. Each module registers one pass; they are imported by this explicit list, so an
import error fails loudly instead of silently dropping a pass. Aliases name fixed pipelines.
"""
from mpc.passmanager import register_alias

from . import (  # noqa: F401  (each import registers its pass)
    c_accumulators,
    c_sparse,
    dce,
    fold_batchnorm,
    fold_constants,
    fuse,
    fuse_conv_epilogue,
    gemm_to_matmul,
    lbi_prune,
    lower_hopfield,
    lower_hw,
    lower_hw_snn,
    lower_lif,
    lower_ltc,
    lower_nlif,
    mp_calibrate,
    mp_rewrite,
    quantize,
    remove_identity,
    snn_chain,
    snn_event,
    sparse_csr,
)

# remove-identity first exposes producers hidden behind dropout/identity; fold-constants turns
# transposed weights into plain weights before fold-batchnorm looks for `matmul(x, @w)`; gemm-to-matmul
# runs after BN folding (which uses gemm's bias slot) and may leave new all-weight ops (a gemm of two
# weights) for the second fold-constants; dce drops what the others replaced, weights included.
register_alias("canonicalize", "remove-identity,fold-constants,fold-batchnorm,gemm-to-matmul,fold-constants,dce",
               summary="cleanup before lowering: identities, constants, BatchNorm, Gemm, dead code")
