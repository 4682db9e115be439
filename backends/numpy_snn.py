"""NumPy-backend renderers of the snn op family: each op is one call into `mpc.snn.kernels`, whose
source (NumPy + numba time loops) model.py embeds and loads through the shared kernel cache, so model.py
and the interpreter run the same loops. numpy_backend merges `RENDER` into its table."""
from __future__ import annotations

import inspect

NAMES = ("snn_encode", "snn_lif", "snn_maxpool", "snn_nlif", "snn_decode", "snn_lif_rec")


def kernel_source() -> str:
    """The source of mpc.snn.kernels (numpy + numba only)."""
    import mpc.snn.kernels
    return inspect.getsource(mpc.snn.kernels)


def _lit(v) -> str:
    return repr(tuple(v)) if isinstance(v, tuple) else repr(v)   # snn attributes are finite numbers


def _encode(op, a):
    at = op.attrs
    return (f"snn_encode({a[0]}, {at.mode.value!r}, {at.timesteps}, {at.seed}, {_lit(at.dt)}, {_lit(at.tau)}, "
            f"{_lit(at.window)})")


def _lif(op, a):
    at = op.attrs
    if len(a) == 3:   # block-recurrent: the dense per-step loop of snn_lif_rec
        return (f"snn_lif_rec({a[0]}, {a[1]}, {a[2]}, {_lit(at.beta)}, {at.reset.value == 'soft'}, {at.refractory}, "
                f"{_lit(at.v0)})")
    return (f"snn_lif({a[0]}, {a[1]}, {_lit(at.beta)}, {at.reset.value == 'soft'}, {at.refractory}, "
            f"{_lit(at.v0)})")


def _maxpool(op, a):
    return f"snn_maxpool({a[0]}, {_lit(op.attrs.kernel)}, {_lit(op.attrs.strides)})"


def _nlif(op, a):
    at = op.attrs
    bias = a[1] if len(a) > 1 else "None"
    return f"snn_nlif({a[0]}, {bias}, {_lit(at.dt)}, {_lit(at.tau)}, {_lit(at.window)}, {at.layer})"


def _decode(op, a):
    at = op.attrs
    return (f"snn_decode({a[0]}, {at.mode.value!r}, {_lit(at.beta)}, {_lit(at.dt)}, {_lit(at.tau)}, "
            f"{_lit(at.window)}, {at.readout})")


RENDER = {"snn.encode": _encode, "snn.lif": _lif, "snn.maxpool": _maxpool, "snn.nlif": _nlif, "snn.decode": _decode}
