"""NumPy-backend renderer of snn.chain: one call into `mpc.snn.chain`, whose source (NumPy + numba) model.py
embeds and loads through the shared kernel cache; numpy_backend merges `RENDER`."""
from __future__ import annotations

import inspect

NAMES = ("snn_chain",)


def kernel_source() -> str:
    """The source of mpc.snn.chain (numpy + numba only)."""
    import mpc.snn.chain
    return inspect.getsource(mpc.snn.chain)


def _chain(op, a):
    at = op.attrs
    return (f"snn_chain({a[0]}, ({', '.join(a[1:])},), {at.timesteps}, {at.beta!r}, {at.soft!r}, "
            f"{at.refractory!r}, {at.v0!r}, {at.sparse!r}, {at.readout_beta!r})")


RENDER = {"snn.chain": _chain}
