"""Backends: each is a lowering pipeline plus a render table (see base.py). Registered by explicit list."""
from mpc.backends import numpy_backend
from mpc.backends.base import Backend

BACKENDS: dict[str, Backend] = {b.name: b for b in [numpy_backend.BACKEND]}

from mpc.backends import c as c_backend  # fixed-point C99 (backends/c/)

BACKENDS[c_backend.BACKEND.name] = c_backend.BACKEND

# NIR export (needs the `nir` package, imported only when writing)
from mpc.backends import nir_backend

BACKENDS[nir_backend.BACKEND.name] = nir_backend.BACKEND

# Verilog-2005 RTL of fixed-point graphs (backends/verilog/)
from mpc.backends import verilog as verilog_backend

BACKENDS[verilog_backend.BACKEND.name] = verilog_backend.BACKEND
