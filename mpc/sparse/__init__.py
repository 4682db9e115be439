"""Sparsity: linearized Bregman iterations (layer-wise LBI for post-training masks), mask statistics
and the CSR kernels the NumPy backend uses for sparse layers. The Bregman optimizers are `mpc.optim`."""
from mpc.sparse.lbi import group_shrink, lbi_path, shrink

__all__ = ["group_shrink", "lbi_path", "shrink"]
