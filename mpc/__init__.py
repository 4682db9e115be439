"""mpc: a compiler from trained networks (ONNX, PyTorch) to standalone NumPy models, float or multiplierless
margin propagation (MP)."""
__version__ = "0.1.0"
