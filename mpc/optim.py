"""Bregman optimizers for sparse training (torch.optim.Optimizer subclasses usable on their own).

`LinBreg` and `AdaBreg` (Bungert et al., JMLR 2022) are defined in `mpc.sparse.bregman`; torch is
imported only when this module is.
"""
from mpc.sparse.bregman import AdaBreg, LinBreg, active_ratio, shrink, sparse_init_

__all__ = ["AdaBreg", "LinBreg", "active_ratio", "shrink", "sparse_init_"]
