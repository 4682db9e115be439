"""Tensor, elementwise, logic and reduction ops imported from ONNX: their reference NumPy kernels.

`mpc.tensor.kernels` holds the kernels of the op kinds declared in `mpc.ir.ops_nn_tensor`; the
interpreter calls them, and the NumPy backend copies that module's source into model.py, so both run
the same code.
"""
