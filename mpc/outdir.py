"""Safe output: write into a temporary folder beside the target and rename it at the end.

A failed run leaves nothing behind; an existing folder or file is replaced only with --force.
NPZ files are written with fixed zip timestamps so the same arrays give the same bytes.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from mpc.errors import BadInput, OutputExists


def check_writable(path: Path, force: bool) -> None:
    """OutputExists unless `path` is free or --force was given."""
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputExists(str(path))
        if path.is_file() and path.suffix != ".npz" and not path.is_dir():
            raise BadInput(f"output '{path}' is a file, not a folder")


@contextlib.contextmanager
def staged_dir(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder that becomes `path` when the block succeeds."""
    path = Path(path)
    check_writable(path, force)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    except OSError as e:
        raise BadInput(f"cannot create output folder '{path}': {e.strerror}") from None
    try:
        yield tmp
        _swap_in(tmp, path, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path, force: bool) -> None:
    if not (path.exists() or path.is_symlink()):
        os.replace(tmp, path)
        return
    check_writable(path, force)
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=tmp.parent))
    os.replace(path, trash / "old")
    os.replace(tmp, path)
    shutil.rmtree(trash, ignore_errors=True)


def write_file(path: Path, data: bytes, force: bool) -> None:
    """Write a single file atomically (temp file + rename), refusing to overwrite without force."""
    path = Path(path)
    check_writable(path, force)
    if path.is_dir():
        raise OutputExists(str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed .npz with entries in the given order and fixed timestamps (deterministic)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, entry.getvalue())
    return buf.getvalue()
