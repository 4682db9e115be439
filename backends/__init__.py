"""Backends: each renders a graph into files of an output folder. Registered by explicit list."""
from mpc.backends import numpy_backend

BACKENDS = {"numpy": numpy_backend.emit}
