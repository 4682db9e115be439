"""NumPy-backend renderings of nn.rnn / nn.gru / nn.lstm and snn.ltc (mpc/ir/ops_rnn.py).

Each op is one call into `mpc.rnn.kernels` or `mpc.snn.ltc` (NumPy only), whose source model.py embeds,
so model.py runs the interpreter's own loops. numpy_backend merges `RENDER` into its table.
"""
from __future__ import annotations

import inspect

NAMES = ("rnn_run", "ltc_run")


def kernel_source() -> str:
    """The sources of mpc.rnn.kernels and mpc.snn.ltc, one module (both import only NumPy)."""
    import mpc.rnn.kernels
    import mpc.snn.ltc
    return inspect.getsource(mpc.rnn.kernels) + "\n\n" + inspect.getsource(mpc.snn.ltc)  # same _sigmoid


def _rnn(kind: str):
    def render(op, a):
        at = op.attrs
        states = a[5:] if kind == "lstm" else a[4:]
        h0, c0 = (list(states) + ["None", "None"])[:2]
        p = a[4] if kind == "lstm" else "None"
        return (f"rnn_run({kind!r}, {a[0]}, {a[1]}, {a[2]}, {a[3]}, {h0}, {c0}, {p}, {at.layout}, "
                f"{at.linear_before_reset}, {at.direction.value == 'reverse'})")
    return render


def _ltc(op, a):
    return f"ltc_run({', '.join(a)}, {op.attrs.theta0!r}, {op.attrs.beta!r})"


RENDER = {"nn.rnn": _rnn("rnn"), "nn.gru": _rnn("gru"), "nn.lstm": _rnn("lstm"), "snn.ltc": _ltc}
