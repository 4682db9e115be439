"""NumPy-backend renderers of the snn op family: each op is one call into `mpc.snn.kernels`,
whose source (NumPy + numba time loops) model.py embeds and loads through the shared kernel cache,
so model.py and the interpreter run the same loops."""
from __future__ import annotations

import inspect

from mpc.backends.numpy_backend import _EMBEDS, EXTRA_SOURCE, _kernel_module, _lit, renders

_NAMES = ("snn_encode", "snn_lif", "snn_maxpool", "snn_nlif", "snn_decode")


def _snn_kernel_source() -> str:
    """The snn kernels (mpc.snn.kernels, numpy + numba only), embedded so model.py stands alone."""
    import mpc.snn.kernels
    return _kernel_module("snn kernels", inspect.getsource(mpc.snn.kernels), _NAMES)


_EMBEDS[_snn_kernel_source] = _NAMES
for _kind in ("snn.encode", "snn.lif", "snn.maxpool", "snn.nlif", "snn.decode"):
    EXTRA_SOURCE[_kind] = _snn_kernel_source


@renders("snn.encode")
def _encode(op, a):
    at = op.attrs
    return (f"snn_encode({a[0]}, {at.mode.value!r}, {at.timesteps}, {at.seed}, {_lit(at.dt)}, {_lit(at.tau)}, "
            f"{_lit(at.window)})")


@renders("snn.lif")
def _lif(op, a):
    at = op.attrs
    return (f"snn_lif({a[0]}, {a[1]}, {_lit(at.beta)}, {at.reset.value == 'soft'}, {at.refractory}, "
            f"{_lit(at.v0)})")


@renders("snn.maxpool")
def _maxpool(op, a):
    return f"snn_maxpool({a[0]}, {_lit(op.attrs.kernel)}, {_lit(op.attrs.strides)})"


@renders("snn.nlif")
def _nlif(op, a):
    at = op.attrs
    bias = a[1] if len(a) > 1 else "None"
    return f"snn_nlif({a[0]}, {bias}, {_lit(at.dt)}, {_lit(at.tau)}, {_lit(at.window)}, {at.layer})"


@renders("snn.decode")
def _decode(op, a):
    at = op.attrs
    return (f"snn_decode({a[0]}, {at.mode.value!r}, {_lit(at.beta)}, {_lit(at.dt)}, {_lit(at.tau)}, "
            f"{_lit(at.window)}, {at.readout})")
