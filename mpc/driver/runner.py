"""`mpc run`: execute a converted folder's generated model.py on a data file."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from mpc.data import load_data, npz_bytes
from mpc.driver.outdir import check_not_input, check_writable, write_file
from mpc.errors import BadInput, KernelError
from mpc.frontend import load


def _imported_model(path: Path):
    """OUTDIR/model.py imported as a module (not registered in sys.modules: its compiled kernels
    live in a module of their own, which model.py loads through the shared kernel cache)."""
    spec = importlib.util.spec_from_file_location("model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_outdir(outdir: Path, data_path: str, output: str | None, force: bool, quiet: bool) -> dict:
    """Run OUTDIR/model.py on DATA.npz; write outputs to `output` (.npz) when given."""
    for f in ("model.py", "model.mpc", "weights.npz"):
        if not (outdir / f).is_file():
            raise BadInput(f"{outdir}: not a converted output folder (no {f})")
    if output:
        check_not_input(Path(output), [data_path] + [outdir / f for f in ("model.py", "model.mpc", "weights.npz")],
                        folder=False)
        check_writable(Path(output), force)
        parent = Path(output).parent
        if not parent.is_dir():
            raise BadInput(f"cannot write '{output}': no such folder '{parent}'")
    graph = load(str(outdir / "model.mpc")).graph
    data = load_data(data_path, graph)
    try:
        model = _imported_model(outdir / "model.py")
        with np.errstate(all="ignore"):
            out = model.run(data.feeds)
    except ValueError as e:
        raise KernelError(f"{outdir / 'model.py'}: {e}") from None
    if output:
        write_file(Path(output), npz_bytes(out), force)
    if not quiet:
        for k, v in out.items():
            line = f"{k}: {v.dtype}{list(v.shape)}"
            if data.labels is not None and v.ndim == 2 and v.shape[0] == data.labels.shape[0]:
                line += f"  accuracy {100 * float((v.argmax(1) == data.labels).mean()):.2f}%"
            print(line, file=sys.stderr)
    return out
