"""Spiking neural networks: the compiled time loops of the snn op family (mpc.snn.kernels) and
algorithms that are not passes (the n-LIF perceptron, the cost model)."""
