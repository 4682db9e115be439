"""Frontends: turn a model spec into a verified IR graph.

`load(spec)` dispatches on the spec's form: `*.onnx` (ONNX frontend), `*.pt`/`*.pth` (TorchScript)
or `pkg.module:factory` / `path/to/file.py:factory` (PyTorch, exported to ONNX first), and `*.mpc`
(IR text with the `weights.npz` beside it). torch is imported only on the PyTorch paths.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from mpc.errors import BadInput, BadModel
from mpc.ir import Graph, parse

_FACTORY = re.compile(r"^(?:[A-Za-z_][\w.]*|.+\.py):[A-Za-z_]\w*$")
EXPORTERS = ("legacy", "dynamo")


@dataclass
class Loaded:
    """A loaded model: the IR graph, the source ONNX model (None for .mpc) and name maps."""

    graph: Graph
    onnx_model: onnx.ModelProto | None
    source: str
    input_names: dict[str, str]
    output_names: dict[str, str] = field(default_factory=dict)


def load(spec: str, input_shape: tuple[int, ...] | None = None, exporter: str = "legacy",
         static_batch: bool = False, outputs: tuple[str, ...] = ()) -> Loaded:
    """Load a model spec into a verified graph (see the module docstring for the forms).

    `input_shape` (batch dim first; exported dynamic as `N`) is needed by the PyTorch forms, and
    `exporter` ('legacy' or 'dynamo') picks the torch.onnx exporter there. An ONNX model whose
    inputs all lead with a static 1 gets a symbolic batch `N` instead, unless `static_batch`.
    `outputs` keeps only those graph outputs of an ONNX model (and what feeds them), before import.
    """
    spec = str(spec)
    lower = spec.lower()
    if lower.endswith(".onnx"):
        return load_onnx(spec, static_batch=static_batch, outputs=outputs)
    if lower.endswith(".mpc"):
        if outputs:
            raise BadInput(f"--outputs applies to ONNX and PyTorch models, not to IR text ({spec})")
        return load_mpc(spec)
    if lower.endswith((".pt", ".pth")) or _FACTORY.match(spec):
        if exporter not in EXPORTERS:
            raise BadInput(f"unknown exporter '{exporter}' (expected one of: {', '.join(EXPORTERS)})")
        from mpc.frontend import torch as torch_frontend
        data, name = torch_frontend.export(spec, input_shape, exporter)
        return load_onnx(data, label=spec, name=name, static_batch=static_batch, outputs=outputs)
    raise BadInput(f"unknown model spec '{spec}' (expected a .onnx, .pt/.pth or .mpc file, "
                   f"or pkg.module:factory)")


def load_onnx(source: str | bytes, label: str | None = None, name: str | None = None,
              static_batch: bool = False, outputs: tuple[str, ...] = ()) -> Loaded:
    """Read, check and import an ONNX model from a path or bytes (only `outputs`, when given)."""
    from mpc.frontend.onnx import import_model, read_model
    label = label or (source if isinstance(source, str) else "<bytes>")
    model = read_model(source, label, tuple(outputs))
    if name:
        model.graph.name = name
    stem = Path(label).stem if isinstance(source, str) else "model"
    graph, inputs, outputs = import_model(model, label, stem, static_batch)
    return Loaded(graph, model, label, inputs, outputs)


def load_mpc(path: str) -> Loaded:
    """Parse IR text with the weights.npz beside it."""
    p = Path(path)
    if not p.is_file():
        raise BadModel(path, "no such file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadModel(path, f"cannot read: {e}") from None
    weights = _read_npz(p.parent / "weights.npz") if (p.parent / "weights.npz").exists() else {}
    graph = parse(text, weights, filename=path)
    names = {v.name: v.name for v in graph.inputs}
    return Loaded(graph, None, path, names, {v.name: v.name for v in graph.outputs})


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BadModel(str(path), f"cannot read the weights: {e}") from None
