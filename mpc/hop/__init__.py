"""Hopfield form and dyadic learning: relaxation kernels (mpc.hop.kernels), the connectivity W_lam and
its analysis (mpc.hop.analysis), dual propagation (mpc.hop.dualprop) and equilibrium propagation
(mpc.hop.ep), all in NumPy without autograd."""
