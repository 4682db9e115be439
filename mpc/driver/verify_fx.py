"""What `mpc verify` adds for fixed point: the float converted graph beside the quantized one, and
the compiled C checked against the emulator (the interpreter's fx kernels) integer by integer.

`compile_with_float` runs the pipeline up to `quantize`, keeps a copy (the float converted graph),
then runs the rest; `fx_measure` compares the two on the verify data; `c_measure` builds the C
backend's output with the host gcc and counts output integers that differ from the emulator's.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from mpc.data import Dataset, batches
from mpc.driver.compiler import Settings, compile_model, pipeline_for
from mpc.ir import Graph, clone, run
from mpc.passmanager import parse_pipeline, run_pipeline


def compile_with_float(spec: str, settings: Settings, loaded) -> tuple[Graph, Graph | None]:
    """The converted graph and, when the pipeline quantizes, the graph just before `quantize`."""
    stages = [str(s) for s in parse_pipeline(pipeline_for(settings))]
    names = [s.split("{")[0] for s in stages]
    if "quantize" not in names:
        return compile_model(spec, settings, loaded=loaded).graph, None
    i = names.index("quantize")
    compiled = compile_model(spec, replace(settings, passes=",".join(stages[:i])), loaded=loaded)
    float_graph = clone(compiled.graph)
    if compiled.ctx is not None and compiled.ctx.dataset is None:
        from mpc.driver.compiler import calibration_data
        compiled.ctx.dataset = calibration_data(settings, loaded, pipeline=",".join(stages[i:]))
    run_pipeline(compiled.graph, ",".join(stages[i:]), compiled.ctx)
    return compiled.graph, float_graph


def _top1(a: np.ndarray) -> np.ndarray | None:
    return a.reshape(a.shape[0], -1).argmax(axis=1) if a.ndim >= 2 and a.shape[0] else None


def fx_measure(float_graph: Graph, graph: Graph, data: Dataset) -> dict[str, Any]:
    """Accuracy of the float converted graph, and the fixed-point graph's agreement and error against it."""
    name = graph.outputs[0].name
    fl, fxd = [], []
    for feeds, _ in batches(data, 256):
        fl.append(run(float_graph, feeds)[name])
        fxd.append(run(graph, feeds)[name])
    f, q = np.concatenate(fl), np.concatenate(fxd)
    tf, tq = _top1(f), _top1(q)
    out = {"float_converted_max_abs_err": float(np.abs(q.astype(np.float64) - f).max(initial=0.0)),
           "float_converted_agreement": None if tf is None else float((tf == tq).mean()),
           "float_converted_accuracy": None}
    if data.labels is not None and tf is not None:
        out["float_converted_accuracy"] = float((tf == data.labels).mean())
    return out


def print_fx(r: dict[str, Any]) -> None:
    """The fixed-point lines of the verify table (nothing when the graph is not quantized)."""
    if "float_converted_agreement" not in r and "c_mismatches" not in r:
        return
    pct = (lambda v: "-" if v is None else f"{100 * v:.2f}%")
    if "float_converted_agreement" in r:
        print(f"  vs float converted  accuracy {pct(r['float_converted_accuracy'])}   top-1 agreement "
              f"{pct(r['float_converted_agreement'])}   max abs err {r['float_converted_max_abs_err']:.3g}")
    if "c_max_abs_err" in r:
        print(f"  float C vs interpreter  {r['c_mismatches']} of {r['c_elements']} outputs beyond rtol "
              f"{FLOAT_RTOL:g}, max abs err {r['c_max_abs_err']:.3g} ({r['c_samples']} samples, gcc -O2)")
    elif "c_mismatches" in r:
        print(f"  C vs emulator    {r['c_mismatches']} of {r['c_elements']} output integers differ "
              f"({r['c_samples']} samples, gcc -O2)")
    if "c_cortex_m_max_abs_err" in r:
        print(f"  Cortex-M4 (qemu, soft float) {r['c_cortex_m_mismatches']} outputs differ from the host C's bits "
              f"({r['c_cortex_m_samples']} samples; max abs err vs interpreter {r['c_cortex_m_max_abs_err']:.3g})")
    elif "c_cortex_m_mismatches" in r:
        print(f"  Cortex-M4 (qemu) {r['c_cortex_m_mismatches']} output integers differ ({r['c_cortex_m_samples']} "
              f"samples; flash {r['c_cortex_m_flash_bytes']} B, RAM {r['c_cortex_m_ram_bytes']} B)")
    elif "c_cortex_m" in r:
        print(f"  Cortex-M4        {r['c_cortex_m']}")


def emulator_io(graph: Graph, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The emulator's quantized input integers and output integers (before fx.dequantize), all samples."""
    from mpc.backends.c import _boundary
    qin, qout = _boundary(graph)
    ins, outs = [], []
    for feeds, _ in batches(data, 256):
        got = run(graph, feeds, keep_all=True)
        ins.append(got[qin.name])
        outs.append(got[qout.name])
    return np.concatenate(ins), np.concatenate(outs)


def c_measure(graph: Graph, data: Dataset, extra_flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """Emit C for `graph`, compile it with the host gcc, run every sample, count differing output integers."""
    import tempfile
    from pathlib import Path

    from mpc.backends import BACKENDS
    from mpc.backends.base import lower
    from mpc.backends.c import render_c
    from mpc.backends.c.build import HOST_FLAGS, compile_host, run_host
    lowered, _ = lower(BACKENDS["c"], graph)
    if not any(op.kind.startswith("fx.") for op in lowered.ops):
        return _c_float(lowered, data, extra_flags)
    qin, qout = emulator_io(lowered, data)
    with tempfile.TemporaryDirectory(prefix="mpc-verify-c-") as tmp:
        d = Path(tmp)
        c, h, main, _ = render_c(lowered)
        for name, text in (("model.c", c), ("model.h", h), ("main.c", main)):
            (d / name).write_text(text)
        exe = compile_host(d, d / "model", extra_flags)
        raw = run_host(exe, np.ascontiguousarray(qin).tobytes())
        arm = cortex_m_measure(d, qin, qout, types=render_c(lowered)[3])
    got = np.frombuffer(raw, dtype=qout.dtype)
    want = qout.reshape(-1)
    mismatches = int(want.size) if got.size != want.size else int((got != want).sum())
    from mpc.backends.c.resources import counted_ops
    return {"c_mismatches": mismatches, "c_samples": int(qin.shape[0]), "c_elements": int(want.size),
            "c_flags": " ".join(HOST_FLAGS + extra_flags), "c_ops": counted_ops(lowered, data)} | arm


CORTEX_M_SAMPLES = 32   # samples run under qemu (each is built into the firmware image)


def cortex_m_measure(cdir, qin: np.ndarray, qout: np.ndarray, types: str) -> dict[str, Any]:
    """Run the first samples on an emulated Cortex-M4 (qemu, MPS2-AN386) when the Arm tools are
    installed; mismatching output integers, flash and RAM of the firmware, or why it was skipped."""
    from mpc.backends.c import cortexm
    from mpc.backends.c.build import ToolMissing
    n = min(CORTEX_M_SAMPLES, qin.shape[0])
    in_t, out_t = types.split()
    try:
        elf = cortexm.build(cdir, cdir, qin[:n], in_t, out_t)
        got = np.array(cortexm.run_qemu(elf), dtype=np.int64)
        sizes = cortexm.firmware_sizes(elf)
    except ToolMissing as e:
        return {"c_cortex_m": f"not run: {e}"}
    want = qout[:n].reshape(-1).astype(np.int64)
    bad = int(want.size) if got.size != want.size else int((got != want).sum())
    return {"c_cortex_m_mismatches": bad, "c_cortex_m_samples": int(n), "c_cortex_m_flash_bytes": sizes["flash_bytes"],
            "c_cortex_m_ram_bytes": sizes["ram_bytes"]}


FLOAT_RTOL = 1e-4   # float C sums in its own order: agreement to rounding, relative to max(1, |value|)


def _c_float(graph: Graph, data: Dataset, extra_flags: tuple[str, ...]) -> dict[str, Any]:
    """Float C against the interpreter: the largest difference and the elements beyond FLOAT_RTOL."""
    import tempfile
    from pathlib import Path

    from mpc.backends.c import render_c
    from mpc.backends.c.build import HOST_FLAGS, compile_host, run_host
    name_in, name_out = graph.inputs[0].name, graph.outputs[0].name
    x = np.ascontiguousarray(data.feeds[name_in], dtype=np.float32)
    want = np.concatenate([run(graph, feeds)[name_out] for feeds, _ in batches(data, 256)]).reshape(-1)
    with tempfile.TemporaryDirectory(prefix="mpc-verify-c-") as tmp:
        d = Path(tmp)
        c, h, main, _ = render_c(graph)
        for fname, text in (("model.c", c), ("model.h", h), ("main.c", main)):
            (d / fname).write_text(text)
        got = np.frombuffer(run_host(compile_host(d, d / "model", extra_flags), x.tobytes()), dtype=np.float32)
        arm = _float_cortex_m(d, x, got, want)
    if got.size != want.size:
        return {"c_mismatches": int(want.size), "c_samples": int(x.shape[0]), "c_elements": int(want.size)}
    diff = np.abs(got.astype(np.float64) - want)
    bad = int((diff > FLOAT_RTOL * np.maximum(1.0, np.abs(want))).sum())
    return {"c_mismatches": bad, "c_samples": int(x.shape[0]), "c_elements": int(want.size),
            "c_max_abs_err": float(diff.max(initial=0.0)), "c_flags": " ".join(HOST_FLAGS + extra_flags)} | arm


def _float_cortex_m(cdir, x: np.ndarray, host: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    """Float C on the emulated Cortex-M4 (soft-float ABI: -mcpu=cortex-m4 -mthumb without an FPU flag):
    output elements whose bits differ from the host C's, the largest difference from the interpreter."""
    from mpc.backends.c import cortexm
    from mpc.backends.c.build import ToolMissing
    n = min(CORTEX_M_SAMPLES, x.shape[0])
    try:
        elf = cortexm.build(cdir, cdir, x[:n], "float", "float")
        bits = np.array(cortexm.run_qemu(elf), dtype=np.uint64).astype(np.uint32)
        sizes = cortexm.firmware_sizes(elf)
    except ToolMissing as e:
        return {"c_cortex_m": f"not run: {e}"}
    m = want.size // x.shape[0] * n
    if bits.size != m or host.size < m:
        return {"c_cortex_m_mismatches": m, "c_cortex_m_samples": int(n)}
    got = bits.view(np.float32)
    return {"c_cortex_m_mismatches": int((bits != host[:m].view(np.uint32)).sum()), "c_cortex_m_samples": int(n),
            "c_cortex_m_max_abs_err": float(np.abs(got.astype(np.float64) - want[:m]).max(initial=0.0)),
            "c_cortex_m_flash_bytes": sizes["flash_bytes"], "c_cortex_m_ram_bytes": sizes["ram_bytes"]}
