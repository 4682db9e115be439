"""NumPy-backend renderer of snn.event_linear: one call into `mpc.snn.event`, whose source (NumPy +
numba) model.py embeds and loads through the shared kernel cache; numpy_backend merges `RENDER`."""
from __future__ import annotations

import inspect

NAMES = ("event_linear",)


def kernel_source() -> str:
    """The source of mpc.snn.event (numpy + numba only)."""
    import mpc.snn.event
    return inspect.getsource(mpc.snn.event)


def _event_linear(op, a):
    at = op.attrs
    theta = a[3] if len(a) > 3 else "None"
    return (f"event_linear({a[0]}, {a[1]}, {a[2]}, {theta}, {at.beta!r}, {at.reset.value == 'soft'}, "
            f"{at.refractory}, {at.v0!r})")


RENDER = {"snn.event_linear": _event_linear}
