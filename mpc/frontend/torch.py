"""The PyTorch frontend: export an nn.Module (from a factory or a TorchScript file) to ONNX bytes.

torch is imported here lazily, only when a PyTorch spec is loaded. The module is exported in
eval mode with torch.onnx.export, the batch dim of every input dynamic as `N`, either with the
legacy TorchScript exporter (the default) or with the torch.export-based one (`dynamo`); the
ONNX frontend then imports the bytes like any other model.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import re
import sys
import warnings
from pathlib import Path

from mpc.errors import BadInput, BadModel

_NEEDS_TORCH = "the PyTorch frontend needs torch: pip install 'mpc[torch]'"
EXAMPLE_BATCH = 2  # the dynamo exporter specializes a batch of 1, so the example input uses 2


def _import_torch():
    try:
        import torch
    except ImportError:
        raise BadInput(_NEEDS_TORCH) from None
    return torch


def export(spec: str, input_shape, exporter: str = "legacy") -> tuple[bytes, str]:
    """Export the module of `spec` to serialized ONNX; returns (bytes, graph name)."""
    torch = _import_torch()
    if spec.lower().endswith((".pt", ".pth")):
        if exporter == "dynamo":
            raise BadInput(f"{spec}: the dynamo exporter cannot export TorchScript; use the legacy exporter")
        module, name = _load_torchscript(torch, spec), Path(spec).stem
    if input_shape is None:   # before the factory runs: user code may be slow
        raise BadInput(f"{spec}: a PyTorch model needs --input-shape (batch first, e.g. --input-shape 1,64)")
    if not spec.lower().endswith((".pt", ".pth")):
        module, name = _call_factory(torch, spec), spec.rsplit(":", 1)[1]
    shapes = _shapes(input_shape)
    gen = torch.Generator().manual_seed(0)
    args = tuple(torch.randn((max(EXAMPLE_BATCH, s[0]),) + s[1:], generator=gen) for s in shapes)
    module.eval()
    with _quiet():
        try:
            data = _dynamo(torch, module, args) if exporter == "dynamo" else _legacy(torch, module, args)
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001  (user model code and exporter internals raise anything)
            raise BadModel(spec, f"torch.onnx.export ({exporter}) failed: {_first_line(e)}") from None
    return data, name


def _first_line(e: BaseException) -> str:
    """The root cause's first line, without terminal colour codes."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _shapes(input_shape) -> list[tuple[int, ...]]:
    """One shape, or a sequence of shapes for several inputs; every dim a positive int."""
    shapes = list(input_shape) if input_shape and isinstance(input_shape[0], (tuple, list)) else [input_shape]
    out = []
    for s in shapes:
        if not s or not all(isinstance(d, int) and d > 0 for d in s):
            raise BadInput(f"bad input shape {tuple(s)!r} (expected positive ints, batch first, "
                           f"e.g. (1, 64))")
        out.append(tuple(s))
    return out


def _names(module, attr: str, default: str, n: int) -> list[str]:
    names = getattr(module, attr, None)
    if names:
        return list(names)
    return [default] if n == 1 else [f"{default}{i}" for i in range(n)]


def _legacy(torch, module, args) -> bytes:
    inputs = _names(module, "input_names", "input", len(args))
    outputs = _names(module, "output_names", "output", 1)
    buf = io.BytesIO()
    torch.onnx.export(module, args, buf, dynamo=False, input_names=inputs, output_names=outputs,
                      dynamic_axes={name: {0: "N"} for name in inputs})
    return buf.getvalue()


def _dynamo(torch, module, args) -> bytes:
    if importlib.util.find_spec("onnxscript") is None:
        raise BadInput("the dynamo exporter needs onnxscript: pip install 'mpc[torch]'")
    inputs = _names(module, "input_names", "input", len(args))
    outputs = _names(module, "output_names", "output", 1)
    batch = torch.export.Dim("N")
    program = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                dynamic_shapes=tuple({0: batch} for _ in args), verbose=False)
    return program.model_proto.SerializeToString()


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, deprecation warnings and log lines."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _load_torchscript(torch, path: str):
    p = Path(path)
    if not p.is_file():
        raise BadModel(path, "no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # noqa: BLE001  (torch raises RuntimeError, ValueError, ... on bad archives)
        raise BadModel(path, f"not a readable TorchScript file (save with torch.jit.save; pickled modules "
                             f"are not loaded since unpickling runs code): {_first_line(e)}") from None


def _call_factory(torch, spec: str):
    """Import `pkg.module:factory` or `path/file.py:factory`, call it, check it is an nn.Module."""
    where, fname = spec.rsplit(":", 1)
    with _cwd_on_path():
        module = _import_file(where) if where.endswith(".py") else _import_module(where)
        factory = getattr(module, fname, None)
        if not callable(factory):
            raise BadInput(f"'{where}' has no callable '{fname}'")
        try:
            model = factory()
        except Exception as e:  # noqa: BLE001  (user code)
            raise BadInput(f"{spec}: the factory raised {_first_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"{spec}: the factory returned {type(model).__name__}, expected a torch.nn.Module")
    return model


@contextlib.contextmanager
def _cwd_on_path():
    """The current folder first on sys.path, as `python -m` has it, while the user's code loads."""
    entry = os.getcwd()
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001  (user code)
        raise BadInput(f"cannot import module '{name}': {_first_line(e)}") from None


def _import_file(path: str):
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"no such file '{path}'")
    name = "mpc_user_" + "".join(c if c.isalnum() else "_" for c in str(p.resolve()))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001  (user code)
        raise BadInput(f"cannot import '{path}': {_first_line(e)}") from None
    sys.modules[name] = module
    return module
