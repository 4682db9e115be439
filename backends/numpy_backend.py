"""NumPy backend: renders a graph as a standalone `model.py`.

The file imports only NumPy (plus numba where a kernel needs it), loads `weights.npz` from its
own folder, exposes `run(inputs: dict) -> dict`, and has a `__main__` that reads an .npz and
writes one. The backend's lowering (`LOWERING`, the pass fuse-conv-epilogue) first turns conv
[+ relu] [+ max-pool] chains into `np.conv2d_fused` and, beside compiled kernels, matmuls into
`np.matmul_fast`; rendering then maps each op kind to one call through `RENDER`, deciding nothing.
Helper kernels are copied from `mpc.kernels_np` (the interpreter runs the same source).
Convolutions and max-pools run the compiled kernels of `mpc.kernels_nb`; a conv or pool over
`[..,N,C,H,W]` folds its leading dims into the batch by a reshape around the call. Compiled kernels
(these, and the MP kernels of `mpc.mp`) are embedded as text and loaded through
`mpc.kernel_cache.load_kernels`, so that numba compiles them once per machine, not once per folder.
The tests check model.py and the interpreter against onnxruntime. An op kind without a renderer is
rejected by name.
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from pathlib import Path

from mpc.backends.base import Backend, Emitted, Render, check_renderable

from mpc import __version__, kernels_np
from mpc.ir import Graph, Op
from mpc.ir.ops_np import pool_attrs
from mpc.ir.printer import format_literal, value_names
from mpc.kernel_cache import load_kernels

LOWERING = "fuse-conv-epilogue,sparse-csr"
RENDER: dict[str, Render] = {}
HELPERS: dict[str, list[str]] = {}   # op kind -> names of mpc.kernels_np functions it needs
EXTRA_SOURCE: dict[str, Callable[[], str]] = {}   # op kind -> extra source (e.g. numba kernels)


def renders(*kinds: str, helpers: tuple[str, ...] = ()):
    """Register a render function for op kinds (and the kernels_np helpers it calls)."""
    def deco(fn: Render) -> Render:
        for k in kinds:
            RENDER[k] = fn
            HELPERS[k] = list(helpers)
        return fn
    return deco


def _lit(v) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else f"float('{format_literal(v)}')"
    if isinstance(v, tuple):
        return "(" + "".join(f"{_lit(x)}, " for x in v) + ")"
    return repr(v)


_BINARY = {"nn.add": "+", "nn.sub": "-", "nn.mul": "*"}


@renders(*_BINARY)
def _binary(op, a):
    return f"{a[0]} {_BINARY[op.kind]} {a[1]}"


@renders("nn.div", helpers=("div",))
def _div(op, a):
    return f"div({a[0]}, {a[1]})"


@renders("nn.matmul")
def _matmul(op, a):
    if op.operands[0].type.rank > 2 and op.operands[1].type.rank == 2:   # leading dims: one 2-D product
        return f"np.matmul({a[0]}.reshape(-1, {a[0]}.shape[-1]), {a[1]}).reshape({a[0]}.shape[:-1] + (-1,))"
    return f"np.matmul({a[0]}, {a[1]})"


@renders("nn.relu")
def _relu(op, a):
    return f"np.maximum({a[0]}, {a[0]}.dtype.type(0))"


@renders("nn.leaky_relu")
def _leaky(op, a):
    return f"np.where({a[0]} >= 0, {a[0]}, {a[0]} * {a[0]}.dtype.type({_lit(op.attrs.alpha)}))"


@renders("nn.sigmoid", helpers=("sigmoid",))
def _sigmoid(op, a):
    return f"sigmoid({a[0]})"


@renders("nn.tanh")
def _tanh(op, a):
    return f"np.tanh({a[0]})"


@renders("nn.softmax", helpers=("softmax",))
def _softmax(op, a):
    return f"softmax({a[0]}, {op.attrs.axis})"


@renders("nn.clip")
def _clip(op, a):
    t = f"{a[0]}.dtype.type"
    return f"np.clip({a[0]}, {t}({_lit(op.attrs.min)}), {t}({_lit(op.attrs.max)}))"


@renders("nn.identity", "nn.dropout")
def _identity(op, a):
    return a[0]


@renders("nn.cast")
def _cast(op, a):
    return f"{a[0]}.astype(np.{op.attrs.to.numpy.name})"


@renders("nn.gemm", helpers=("gemm",))
def _gemm(op, a):
    c = a[2] if len(a) > 2 else "None"
    at = op.attrs
    return f"gemm({a[0]}, {a[1]}, {c}, {_lit(at.alpha)}, {_lit(at.beta)}, {at.trans_a}, {at.trans_b})"


def _pool_args(at) -> str:
    return f"{_lit(at.kernel)}, {_lit(at.strides)}, {_lit(at.pads)}, {_lit(at.dilations)}, {at.ceil_mode}"


def _folded(op: Op, a: list[str], call: Callable[[str], str]) -> str:
    """`call(x)` for a kernel of [N,C,H,W]; an [..,N,C,H,W] operand is reshaped around the call so that
    its leading dims (time-major T) join the batch, as the op's reference kernel does."""
    x = a[0]
    if op.operands[0].type.rank == 4:
        return call(x)
    tail = op.result.type.shape[-3:]   # (C, OH, OW): OH, OW static; C symbolic only for a pool
    dims = "".join(f"{d}, " if isinstance(d, int) else f"{x}.shape[{i - 3}], " for i, d in enumerate(tail))
    return f"{call(f'{x}.reshape((-1, ) + {x}.shape[-3:])')}.reshape({x}.shape[:-3] + ({dims}))"


def _conv_call(op: Op, a: list[str], epilogue: str = "") -> str:
    b = a[2] if len(a) > 2 else "None"
    at = op.attrs
    return _folded(op, a, lambda x: f"conv2d_fused({x}, {a[1]}, {b}, {_lit(at.strides)}, {_lit(at.pads)}, "
                                    f"{_lit(at.dilations)}, {at.group}{epilogue})")


@renders("nn.conv2d")
def _conv(op, a):
    return _conv_call(op, a)


@renders("np.conv2d_fused")
def _conv_fused(op, a):
    pool = pool_attrs(op.attrs)
    epilogue = (", relu=True" if op.attrs.relu else "") + (f", pool=({_pool_args(pool)})" if pool else "")
    return _conv_call(op, a, epilogue)


@renders("np.matmul_fast")
def _matmul_fast(op, a):
    return f"matmul_fast({a[0]}, {a[1]})"


@renders("nn.maxpool2d")
def _maxpool(op, a):
    return _folded(op, a, lambda x: f"maxpool2d_fast({x}, {_pool_args(op.attrs)})")


@renders("nn.avgpool2d", helpers=("pool_out_size", "padded", "taps", "_window_sum", "avgpool2d"))
def _avgpool(op, a):
    at = op.attrs
    return _folded(op, a, lambda x: f"avgpool2d({x}, {_lit(at.kernel)}, {_lit(at.strides)}, {_lit(at.pads)}, "
                                    f"{_lit(at.dilations)}, {at.ceil_mode}, {at.count_include_pad})")


@renders("nn.global_avgpool")
def _gap(op, a):
    return (f"{a[0]}.mean(axis=tuple(range(2, {a[0]}.ndim)), keepdims=True, dtype=np.float64)"
            f".astype({a[0]}.dtype)")


@renders("nn.batchnorm", helpers=("batchnorm",))
def _bn(op, a):
    return f"batchnorm({', '.join(a)}, {_lit(op.attrs.epsilon)})"


@renders("nn.flatten")
def _flatten(op, a):
    n = op.operands[0].type.rank
    axis = op.attrs.axis + n if op.attrs.axis < 0 else op.attrs.axis
    return f"{a[0]}.reshape(int(np.prod({a[0]}.shape[:{axis}])), -1)"


@renders("nn.reshape")
def _reshape(op, a):
    dims = ", ".join(f"{a[0]}.shape[{i}]" if d == 0 else str(d) for i, d in enumerate(op.attrs.shape))
    return f"{a[0]}.reshape({dims},)" if len(op.attrs.shape) == 1 else f"{a[0]}.reshape({dims})"


@renders("nn.transpose")
def _transpose(op, a):
    return f"np.transpose({a[0]}, {_lit(op.attrs.perm)})"


@renders("nn.concat")
def _concat(op, a):
    return f"np.concatenate([{', '.join(a)}], axis={op.attrs.axis})"


@renders("nn.squeeze")
def _squeeze(op, a):
    rank = op.operands[0].type.rank
    return f"np.squeeze({a[0]}, {_lit(tuple(sorted(x % rank for x in op.attrs.axes)))})"


@renders("nn.unsqueeze")
def _unsqueeze(op, a):
    rank = op.result.type.rank
    return f"np.expand_dims({a[0]}, {_lit(tuple(sorted(x % rank for x in op.attrs.axes)))})"


@renders("mp.dot", helpers=("mp_dense",))
def _mp_dot(op, a):
    off = a[3] if len(a) > 3 else "None"
    return f"mp_dense(mp_dot, {a[0]}, {a[1]}, {a[2]}, {off}, {_lit(op.attrs.gamma)}, {_lit(op.attrs.c)})"


@renders("mp.conv2d", helpers=("pool_out_size", "padded", "taps", "im2col", "mp_dense", "mp_conv2d"))
def _mp_conv(op, a):
    off = a[3] if len(a) > 3 else "None"
    at = op.attrs
    return _folded(op, a, lambda x: f"mp_conv2d(mp_dot, {x}, {a[1]}, {a[2]}, {off}, {_lit(at.gamma)}, "
                                    f"{_lit(at.c)}, {_lit(at.strides)}, {_lit(at.pads)}, {_lit(at.dilations)}, "
                                    f"{at.group})")


def _kernel_module(title: str, source: str, names: tuple[str, ...]) -> str:
    """model.py code that loads kernel `source` as a module shared through the user cache (one numba
    cache per machine, see mpc.kernel_cache) and binds `names` from it."""
    if "'''" in source or source.endswith("\\"):
        raise ValueError(f"{title}: kernel source cannot be embedded in a raw string literal")
    var = "_" + title.upper().replace(" ", "_")
    return (f"# ---- {title}: the source below is copied from mpc (mpc {__version__}) and loaded as a module\n"
            f"# shared by every model.py with the same kernels (see load_kernels) ----\n"
            f"{var} = r'''{source}'''\n"
            f"_kernels = load_kernels({var})\n" + "".join(f"{n} = _kernels.{n}\n" for n in names))


def _mp_kernel_source() -> str:
    """The MP kernels (mpc.mp.kernels, numpy + numba only), embedded so model.py stands alone."""
    import mpc.mp.kernels
    return _kernel_module("mp kernels", inspect.getsource(mpc.mp.kernels), _EMBEDS[_mp_kernel_source])


EXTRA_SOURCE["mp.dot"] = EXTRA_SOURCE["mp.conv2d"] = _mp_kernel_source

_FALLBACKS = ("pool_out_size", "padded", "taps", "conv2d", "maxpool2d")  # mpc.kernels_nb imports these


def _compiled_kernel_source() -> str:
    """The compiled NCHW kernels (mpc.kernels_nb) with their NumPy fallbacks put in place of the
    `from mpc.kernels_np import ...` line."""
    text = (Path(kernels_np.__file__).with_name("kernels_nb.py")).read_text()  # not imported: no numba here
    fallbacks = "\n\n".join(inspect.getsource(getattr(kernels_np, n)) for n in _FALLBACKS)
    lines = [fallbacks if ln.startswith("from mpc.") else ln for ln in text.splitlines()]
    return _kernel_module("compiled kernels", "\n".join(lines) + "\n", _EMBEDS[_compiled_kernel_source])


# the names each extra source binds in model.py
_EMBEDS = {_mp_kernel_source: ("mp_dot",),
           _compiled_kernel_source: ("conv2d_fused", "maxpool2d_fast", "matmul_fast")}
for _kind in ("nn.conv2d", "nn.maxpool2d", "np.conv2d_fused", "np.matmul_fast"):
    EXTRA_SOURCE[_kind] = _compiled_kernel_source

_PRELUDE = '''"""{name}: generated by mpc {version} (target {target}). Do not edit; regenerate with mpc.

Usage: python model.py DATA.npz [-o PRED.npz] [--force]   (DATA.npz keyed by input name, or `x`)
From Python: run({{"{first}": array}}) -> {{"{out}": array, ...}}
"""
import sys
import zipfile
from pathlib import Path

import numpy as np
{imports}
INPUTS = {inputs}
OUTPUTS = {outputs}
_W = None


def weights():
    """The weight table, loaded once from weights.npz beside this file."""
    global _W
    if _W is None:
        with np.load(Path(__file__).resolve().with_name("weights.npz"), allow_pickle=False) as f:
            _W = {{k: f[k] for k in f.files}}
    return _W


def _input(inputs, name):
    dtype, shape = INPUTS[name]
    if name not in inputs and not (len(INPUTS) == 1 and "x" in inputs):
        raise ValueError(f"missing input '{{name}}' (expected shape {{list(shape)}})")
    a = np.asarray(inputs[name] if name in inputs else inputs["x"])
    a = a.astype(dtype) if a.dtype != dtype and a.dtype.kind == "f" else a
    ok = a.dtype == dtype and a.ndim == len(shape)
    ok = ok and all(not isinstance(d, int) or d == s for d, s in zip(shape, a.shape))
    if not ok:
        raise ValueError(f"input '{{name}}': expected {{dtype}}{{list(shape)}}, got {{a.dtype}}{{list(a.shape)}}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        rows = ~np.isfinite(a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1))
        first = int(np.flatnonzero(rows.any(1))[0])
        raise ValueError(f"input '{{name}}' contains NaN or infinite values (first at sample {{first}})")
    return a
'''

_MAIN = '''

def _read(path):
    """The arrays of an .npz file; ValueError naming the file otherwise."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise ValueError(f"{path}: not a readable .npz file") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz keyed by input name")
    try:
        with loaded as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise ValueError(f"{path}: not a readable .npz file") from None


def _write(path, arrays, force):
    """Write the .npz atomically (a temporary file renamed); an existing file only with --force."""
    import os
    import tempfile
    out = Path(path)
    if out.resolve() == Path(__file__).resolve().with_name("weights.npz") or (out.exists() and not force):
        raise ValueError(f"output '{path}' already exists (use --force to overwrite)")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent if str(out.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask():
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _main(argv):
    import argparse
    p = argparse.ArgumentParser(prog="model.py", description=__doc__.splitlines()[0])
    p.add_argument("data", help="input .npz, one array per input name")
    p.add_argument("-o", "--output", default="pred.npz", help="where to write the outputs (.npz)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    try:
        if Path(args.output).resolve() == Path(args.data).resolve():
            raise ValueError(f"output '{args.output}' is the input data file")
        out = run(_read(args.data))
        with np.errstate(all="ignore"):
            _write(args.output, out, args.force)
    except (ValueError, OSError) as e:
        print(f"model.py: error: {e}", file=sys.stderr)
        return 2
    for k, v in out.items():
        print(f"{k}: {v.dtype}{list(v.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
'''


def _ident(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return f"v_{s}"


def _body(graph: Graph) -> list[str]:
    check_renderable(graph, RENDER, "numpy")
    names = value_names(graph)
    local = {k: _ident(v) for k, v in names.items()}
    lines = ["    W = weights()"]
    for v in graph.inputs:
        lines.append(f"    {local[id(v)]} = _input(inputs, {v.name!r})")
    last = {id(v): i for i, op in enumerate(graph.ops) for v in op.operands}
    keep = {id(v) for v in graph.outputs}
    for i, op in enumerate(graph.ops):
        args = [f"W[{v.name!r}]" if v.is_weight else local[id(v)] for v in op.operands]
        targets = ", ".join(local[id(r)] for r in op.results)
        lines.append(f"    {targets} = {RENDER[op.kind](op, args)}")
        dead = sorted({local[id(v)] for v in op.operands
                       if not v.is_weight and last[id(v)] == i and id(v) not in keep})
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    outs = ", ".join(f"{v.name!r}: " + (f"W[{v.name!r}]" if v.is_weight else local[id(v)]) for v in graph.outputs)
    lines.append(f"    return {{{outs}}}")
    return lines


def render_model(graph: Graph, target: str = "float") -> str:
    """The text of model.py for `graph`."""
    kinds = sorted({op.kind for op in graph.ops})
    helper_names = []
    for k in kinds:
        for h in HELPERS.get(k, []):
            if h not in helper_names:
                helper_names.append(h)
    source_order = sorted(helper_names, key=lambda n: inspect.getsourcelines(getattr(kernels_np, n))[1])
    helpers = "\n\n".join(inspect.getsource(getattr(kernels_np, n)) for n in source_order)
    sources = []
    for k in kinds:
        if k in EXTRA_SOURCE and EXTRA_SOURCE[k] not in sources:
            sources.append(EXTRA_SOURCE[k])
    extra = "\n\n".join([inspect.getsource(load_kernels)] * bool(sources) + [fn() for fn in sources])
    imports = ""
    inputs = "{" + ", ".join(f"{v.name!r}: ({v.type.dtype.numpy.name!r}, {_lit(v.type.shape)})"
                             for v in graph.inputs) + "}"
    outputs = "[" + ", ".join(repr(v.name) for v in graph.outputs) + "]"
    first = graph.inputs[0].name if graph.inputs else "x"
    text = _PRELUDE.format(name=graph.name, version=__version__, target=target, first=first,
                           out=graph.outputs[0].name if graph.outputs else "y", imports=imports,
                           inputs=inputs, outputs=outputs)
    parts = [text]
    if helpers:
        parts.append("\n\n" + helpers)
    if extra:
        parts.append("\n\n" + extra)
    parts.append("\n\ndef run(inputs):\n    \"\"\"Run the model on a dict of input arrays; returns the outputs by name.\"\"\"\n")
    parts.append("\n".join(_body(graph)) + "\n")
    parts.append(_MAIN)
    return "".join(parts)


def _sections(graph: Graph) -> dict:
    """The report section: which of mpc's kernels model.py embeds."""
    kinds = {op.kind for op in graph.ops}
    compiled = sorted({n for k in kinds & set(EXTRA_SOURCE) for n in _EMBEDS[EXTRA_SOURCE[k]]})
    helpers = sorted({h for k in kinds for h in HELPERS.get(k, [])})
    return {"NumPy kernels": {"compiled kernels": ", ".join(compiled) or "none",
                              "helpers": ", ".join(helpers) or "none"}}


def write(graph: Graph, folder: Path, target: str = "float") -> Emitted:
    """Write model.py for a lowered graph into `folder` (weights.npz is written by the caller)."""
    (Path(folder) / "model.py").write_text(render_model(graph, target))
    _add_lowered_weights(graph, Path(folder))
    return Emitted(("model.py",), _sections(graph))


BACKEND = Backend("numpy", LOWERING, RENDER, write)


# -- tensor, elementwise, logic and reduction ops: renderings in backends/numpy_tensor.py, kernels embedded
from mpc.backends.numpy_tensor import RENDER as _TENSOR_RENDER
from mpc.backends.numpy_tensor import kernel_source as _tensor_source

RENDER.update(_TENSOR_RENDER)
_EMBEDS[_tensor_source] = ()
for _kind in _TENSOR_RENDER:
    EXTRA_SOURCE[_kind] = _tensor_source

# the spatial, normalization and activation ops (mpc.ir.ops_nn_spatial) render through their own table
from mpc.backends.numpy_spatial import RENDER as _SPATIAL_RENDER
from mpc.backends.numpy_spatial import source as _spatial_source

RENDER.update(_SPATIAL_RENDER)
EXTRA_SOURCE.update(dict.fromkeys(_SPATIAL_RENDER, _spatial_source))
_EMBEDS[_spatial_source] = ()   # binds no compiled kernel: the report lists none for it

# -- hop: Hopfield relaxation (kernels of mpc.hop.kernels, NumPy only: the work is BLAS matmuls) -----
_HOP_NAMES = ("hop_relax",)


def _hop_kernel_source() -> str:
    """The relaxation kernels (mpc.hop.kernels), embedded so model.py stands alone."""
    import mpc.hop.kernels
    return _kernel_module("hop kernels", inspect.getsource(mpc.hop.kernels), _HOP_NAMES)


@renders("hop.relax")
def _hop_relax(op, a):
    from mpc.ir.ops_hop import Schedule, couplings
    at = op.attrs
    return (f"hop_relax({a[0]}, {a[1]}, {a[2]}, ({''.join(f'{b}, ' for b in a[3:])}), {_lit(at.sizes)}, "
            f"{_lit(tuple(f.value for f in at.acts))}, {_lit(tuple(couplings(at)))}, "
            f"{at.schedule is Schedule.JACOBI}, {_lit(at.tol)}, {at.max_iter}, {_lit(at.damping)})")


@renders("hop.readout")
def _hop_readout(op, a):
    return f"{a[0]}[:, {op.attrs.offset}:{op.attrs.offset + op.attrs.size}]"


_EMBEDS[_hop_kernel_source] = _HOP_NAMES
EXTRA_SOURCE["hop.relax"] = _hop_kernel_source

# -- snn ops (backends/numpy_snn.py): calls into mpc.snn.kernels, embedded as a kernel module --
from mpc.backends.numpy_snn import NAMES as SNN_NAMES
from mpc.backends.numpy_snn import RENDER as SNN_RENDER
from mpc.backends.numpy_snn import kernel_source as snn_kernel_source


def _snn_kernel_source() -> str:
    """The snn kernels (mpc.snn.kernels), embedded so model.py stands alone."""
    return _kernel_module("snn kernels", snn_kernel_source(), SNN_NAMES)


_EMBEDS[_snn_kernel_source] = SNN_NAMES
for _kind, _fn in SNN_RENDER.items():
    RENDER[_kind], HELPERS[_kind], EXTRA_SOURCE[_kind] = _fn, [], _snn_kernel_source
# -- sparsity: layers under 30% density run in CSR (the lowering pass sparse-csr), on a compiled
# kernel that skips the zeros (mpc.sparse.kernels, embedded like the MP kernels) -----------------
@renders("sp.matmul_csr")
def _matmul_csr(op, a):
    return f"csr_matmul({a[0]}, {a[1]}, {a[2]}, {a[3]})"


@renders("sp.mask", helpers=())
def _mask(op, a):
    return f"np.where({a[1]}, {a[0]}, {a[0]}.dtype.type(0))"


def _sparse_kernel_source() -> str:
    """The CSR kernels (mpc.sparse.kernels, numpy + numba only), embedded so model.py stands alone."""
    import mpc.sparse.kernels
    return _kernel_module("sparse kernels", inspect.getsource(mpc.sparse.kernels), _EMBEDS[_sparse_kernel_source])


_EMBEDS[_sparse_kernel_source] = ("csr_matmul",)
EXTRA_SOURCE["sp.matmul_csr"] = _sparse_kernel_source


def _add_lowered_weights(graph: Graph, folder: Path) -> None:
    """Append to weights.npz the weights the lowering made (sparse-csr's CSR arrays), which model.mpc's
    table lacks; entries already there keep their order, so a graph without such weights is untouched."""
    import numpy as np

    from mpc.data import npz_bytes
    path = folder / "weights.npz"
    if not path.is_file():
        return
    with np.load(path, allow_pickle=False) as f:
        table = {k: f[k] for k in f.files}
    extra = [w for w in graph.used_weights() if w not in table]
    if extra:
        path.write_bytes(npz_bytes(table | {w: graph.weights[w] for w in extra}))
# -- snn events: event-driven synapses on spikes (the lowering pass snn-event; backends/numpy_snn_event.py) --
from mpc.backends.numpy_snn_event import NAMES as SNN_EVENT_NAMES
from mpc.backends.numpy_snn_event import RENDER as SNN_EVENT_RENDER
from mpc.backends.numpy_snn_event import kernel_source as snn_event_kernel_source

LOWERING += ",snn-event"
BACKEND = Backend("numpy", LOWERING, RENDER, write)


def _snn_event_kernel_source() -> str:
    """The event-driven synapse kernels (mpc.snn.event), embedded so model.py stands alone."""
    return _kernel_module("snn event kernels", snn_event_kernel_source(), SNN_EVENT_NAMES)


_EMBEDS[_snn_event_kernel_source] = SNN_EVENT_NAMES
for _kind, _fn in SNN_EVENT_RENDER.items():
    RENDER[_kind], HELPERS[_kind], EXTRA_SOURCE[_kind] = _fn, [], _snn_event_kernel_source
# -- snn chains: a whole rate-coded spiking MLP in one fused time loop (the lowering pass snn-chain, run
# before sparse-csr so that it sees pruned synapses as matmuls; backends/numpy_snn_chain.py) -----------
from mpc.backends.numpy_snn_chain import NAMES as SNN_CHAIN_NAMES
from mpc.backends.numpy_snn_chain import RENDER as SNN_CHAIN_RENDER
from mpc.backends.numpy_snn_chain import kernel_source as snn_chain_kernel_source

LOWERING = LOWERING.replace("sparse-csr", "snn-chain,sparse-csr")
BACKEND = Backend("numpy", LOWERING, RENDER, write)


def _snn_chain_kernel_source() -> str:
    """The fused spiking-chain kernels (mpc.snn.chain), embedded so model.py stands alone."""
    return _kernel_module("snn chain kernels", snn_chain_kernel_source(), SNN_CHAIN_NAMES)


_EMBEDS[_snn_chain_kernel_source] = SNN_CHAIN_NAMES
for _kind, _fn in SNN_CHAIN_RENDER.items():
    RENDER[_kind], HELPERS[_kind], EXTRA_SOURCE[_kind] = _fn, [], _snn_chain_kernel_source

# -- recurrent layers and LTC neurons (backends/numpy_rnn.py): mpc.rnn.kernels + mpc.snn.ltc, embedded --
from mpc.backends.numpy_rnn import NAMES as RNN_NAMES
from mpc.backends.numpy_rnn import RENDER as RNN_RENDER
from mpc.backends.numpy_rnn import kernel_source as rnn_kernel_source


def _rnn_kernel_source() -> str:
    """The recurrent-layer kernels (mpc.rnn.kernels, mpc.snn.ltc), embedded so model.py stands alone."""
    return _kernel_module("rnn kernels", rnn_kernel_source(), RNN_NAMES)


_EMBEDS[_rnn_kernel_source] = RNN_NAMES
for _kind, _fn in RNN_RENDER.items():
    RENDER[_kind], HELPERS[_kind], EXTRA_SOURCE[_kind] = _fn, [], _rnn_kernel_source
