"""mpc as an ONNX backend (`onnx.backend.base.Backend`), so that ONNX's own backend test suite
(`onnx.backend.test.BackendTest`) can run against it.

Not to be confused with `mpc.backends`, the code generators. `prepare` reads and checks the model
exactly as `mpc convert` does (mpc.frontend.onnx), imports it and runs the `float` target's
pipeline; `run` feeds the inputs by position (or by ONNX name) to the interpreter and returns the
outputs in the model's order. For a seeded sample of models (or all, with `check_emitted=True`)
the rep also writes `model.py` with the NumPy backend into a temporary folder, runs it, requires
the interpreter to agree with it, and returns model.py's outputs, so that the test suite checks
the emitted code against ONNX's reference outputs too.

A model mpc cannot import raises its `UnsupportedOp` or `BadModel` from `prepare`, naming the op
or the element type; nothing else is expected to escape. One exception: when an op needs a graph
input at import (a Clip bound, Reshape's shape, a reduction's axes: `NeedsConstant`, which
`mpc convert` refuses), the rep is specialized at `run` time instead, on the values given for those
inputs (they become initializers of a copy of the model, prepared again; `specialized` names them).
That is what an ONNX backend must do to run such a model at all; it is not something `mpc convert`
does, and the conformance benchmark counts these passes separately.
"""
from __future__ import annotations

import importlib.util
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from mpc.errors import BadInput, NeedsConstant
from mpc.frontend.onnx import widened
from mpc.ir import Graph, run, sanitize

EMIT_EVERY = 8   # one model in EMIT_EVERY (by a hash of its graph name) also checks model.py
EMIT_RTOL, EMIT_ATOL = 1e-5, 1e-6   # interpreter vs model.py: same kernels, summation order may differ


def _sampled(name: str) -> bool:
    """Whether the model named `name` belongs to the seeded sample that checks model.py."""
    return zlib.crc32(name.encode()) % EMIT_EVERY == 0


class MpcBackendRep(BackendRep):
    """A prepared model: the converted graph and the names that map ONNX inputs and outputs onto it."""

    def __init__(self, graph: Graph, model: onnx.ModelProto, input_names: dict[str, str],
                 output_names: dict[str, str], check_emitted: bool):
        self.graph, self.model = graph, model
        inits = {t.name for t in model.graph.initializer}
        self.onnx_inputs = [vi.name for vi in model.graph.input if vi.name not in inits]
        self.onnx_outputs = [vi.name for vi in model.graph.output]
        self.input_names, self.output_names = input_names, output_names
        self.check_emitted = check_emitted
        self._emitted = None
        # float16/bfloat16 at the boundary are computed in float32: cast back to what the model declares
        self.narrow = {vi.name: onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
                       for vi in model.graph.output if vi.name in widened(model)}

    def feeds(self, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """IR feeds from positional inputs (the graph's non-initializer inputs, in order) or a dict."""
        if isinstance(inputs, Mapping):
            named = dict(inputs)
        else:
            inputs = list(inputs)
            if len(inputs) != len(self.onnx_inputs):
                raise BadInput(f"expected {len(self.onnx_inputs)} inputs ({', '.join(self.onnx_inputs)}), "
                               f"got {len(inputs)}")
            named = dict(zip(self.onnx_inputs, inputs))
        return {self.input_names.get(k, k): widen(np.asarray(v)) for k, v in named.items()}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """The model's outputs, in its declared order (model.py's when this model checks it)."""
        feeds = self.feeds(inputs)
        got = run(self.graph, feeds)
        outs = [np.asarray(got[self.output_names[n]]) for n in self.onnx_outputs]
        if self.check_emitted and _finite(feeds):  # model.py refuses non-finite data by design
            emitted = self.emitted().run(feeds)
            mine = [np.asarray(emitted[self.output_names[n]]) for n in self.onnx_outputs]
            for name, a, b in zip(self.onnx_outputs, outs, mine):
                _agree(name, a, b)
            outs = mine
        return tuple(a.astype(self.narrow[n]) if n in self.narrow else a for n, a in zip(self.onnx_outputs, outs))

    def emitted(self):
        """model.py of the converted graph, written once into a temporary folder and imported."""
        if self._emitted is None:
            self._emitted = _emit_module(self.graph)
        return self._emitted


def _finite(feeds: Mapping[str, np.ndarray]) -> bool:
    """True when every float feed is finite: model.py rejects NaN/inf inputs as bad data."""
    return all(np.isfinite(a).all() for a in feeds.values() if a.dtype.kind in "fc")


def widen(a: np.ndarray) -> np.ndarray:
    """float16 and bfloat16 data as float32, which mpc computes them in."""
    return a.astype(np.float32) if a.dtype.name in ("float16", "bfloat16") else a


def narrow(got: np.ndarray, declared: np.dtype) -> np.ndarray:
    """An output computed in float32 for a float16/bfloat16 graph, in the type the model declares."""
    return got.astype(declared) if declared.name in ("float16", "bfloat16") and got.dtype == np.float32 else got


def _agree(name: str, interp: np.ndarray, emitted: np.ndarray) -> None:
    """AssertionError when model.py and the interpreter disagree on output `name`."""
    if interp.dtype != emitted.dtype or interp.shape != emitted.shape:
        raise AssertionError(f"output '{name}': interpreter gives {interp.dtype}{list(interp.shape)}, model.py "
                             f"{emitted.dtype}{list(emitted.shape)}")
    if interp.dtype.kind in "fc":
        np.testing.assert_allclose(emitted, interp, rtol=EMIT_RTOL, atol=EMIT_ATOL, err_msg=f"output '{name}'")
    else:
        np.testing.assert_array_equal(emitted, interp, err_msg=f"output '{name}'")


def _emit_module(graph: Graph):
    """Render model.py + weights.npz with the NumPy backend and import the module (its weights are
    read at import, so the folder can go right after)."""
    from mpc.backends import BACKENDS
    from mpc.backends.base import emit
    from mpc.data import npz_bytes
    with tempfile.TemporaryDirectory(prefix="mpc-onnx-backend-") as tmp:
        folder = Path(tmp)
        weights = {w: graph.weights[w] for w in graph.used_weights()}
        (folder / "weights.npz").write_bytes(npz_bytes(weights))
        emit(BACKENDS["numpy"], graph, folder)
        spec = importlib.util.spec_from_file_location(f"_mpc_onnx_backend_{abs(hash(tmp))}", folder / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.weights()   # load now, while the folder exists
    return module


class SpecializingRep(BackendRep):
    """A model whose graph inputs `names` mpc must know at import: each run binds their values as
    initializers, prepares that copy (cached by the bound values) and runs it on the other inputs."""

    def __init__(self, model: onnx.ModelProto, names: tuple[str, ...], check_emitted: bool | None):
        self.model, self.specialized, self.check_emitted = model, names, check_emitted
        inits = {t.name for t in model.graph.initializer}
        self.onnx_inputs = [vi.name for vi in model.graph.input if vi.name not in inits]
        self._reps: dict[bytes, BackendRep] = {}

    def bind(self, inputs: Any) -> tuple[BackendRep, dict[str, np.ndarray]]:
        """The rep prepared for these inputs' specialized values (UnsupportedOp/BadModel when mpc
        refuses it), and the other inputs by name."""
        named = dict(inputs) if isinstance(inputs, Mapping) else dict(zip(self.onnx_inputs, inputs))
        bound = {k: np.asarray(named[k]) for k in self.specialized if k in named}
        key = b"".join(k.encode() + a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()
                       for k, a in sorted(bound.items()))
        if key not in self._reps:
            self._reps[key] = MpcBackend.prepare(_bind(self.model, bound), check_emitted=self.check_emitted)
        rep, rest = self._reps[key], {k: v for k, v in named.items() if k not in bound}
        # binding some inputs can reveal another op that needs one of the rest (Dropout: ratio, then mode)
        return rep.bind(rest) if isinstance(rep, SpecializingRep) else (rep, rest)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Bind the specialized inputs' values, then run the prepared copy on the rest."""
        rep, rest = self.bind(inputs)
        return rep.run(rest)


def _bind(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs in `values` are initializers holding those values."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name not in values]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.initializer.extend(onnx.numpy_helper.from_array(a, k) for k, a in sorted(values.items()))
    return m


def _graph_inputs(model: onnx.ModelProto, ir_names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The ONNX graph inputs behind IR input names, or None when one is not a graph input."""
    inits = {t.name for t in model.graph.initializer}
    by_ir = {sanitize(vi.name): vi.name for vi in model.graph.input if vi.name not in inits}
    found = tuple(by_ir.get(n) for n in ir_names)
    return None if None in found else found


class MpcBackend(Backend):
    """ONNX backend over mpc's importer, `float` pipeline and interpreter (CPU only)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", check_emitted: bool | None = None,
                **kwargs: Any) -> MpcBackendRep:
        """Import and convert `model`; UnsupportedOp/BadModel when mpc cannot."""
        from mpc.driver.compiler import Settings, pipeline_for
        from mpc.frontend.onnx import import_model, read_model
        from mpc.passmanager import PassContext, run_pipeline
        if not cls.supports_device(device):
            raise ValueError(f"mpc runs on the CPU only, not on {device}")
        label = model.graph.name or "model"
        checked = read_model(model.SerializeToString(), label)
        try:
            graph, inputs, outputs = import_model(checked, label, label, static_batch=True)
        except NeedsConstant as e:
            names = _graph_inputs(model, e.sources)
            if names is None:
                raise
            return SpecializingRep(model, names, check_emitted)
        run_pipeline(graph, pipeline_for(Settings()), PassContext(quiet=True))
        emit = _sampled(label) if check_emitted is None else check_emitted
        return MpcBackendRep(graph, checked, inputs, outputs, emit)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any):
        """Prepare `model` and run it once on `inputs`."""
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """Only the CPU."""
        return Device(device).type == DeviceType.CPU


prepare = MpcBackend.prepare
run_model = MpcBackend.run_model
supports_device = MpcBackend.supports_device
