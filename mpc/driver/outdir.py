"""Safe output: write into a temporary folder beside the target and rename it at the end.

A failed run leaves nothing behind; an existing folder or file is replaced only with --force.
(Deterministic .npz bytes come from mpc.data.npz_bytes.)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mpc.errors import BadInput, OutputExists


def check_writable(path: Path, force: bool) -> None:
    """OutputExists unless `path` is free or --force was given."""
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputExists(str(path))
        if path.is_file() and path.suffix != ".npz" and not path.is_dir():
            raise BadInput(f"output '{path}' is a file, not a folder")


def check_not_input(path: Path, inputs: Iterable[str | Path], folder: bool = True) -> None:
    """BadInput when writing `path` would replace one of the command's inputs, or (for a folder) the
    current folder or one that holds it: refused with or without --force."""
    out = Path(path).resolve()
    what = "output folder" if folder else "output"
    if folder and (out == Path.cwd().resolve() or out in Path.cwd().resolve().parents):
        raise BadInput(f"{what} '{path}' is the current folder or holds it: choose a new folder")
    for item in inputs:
        p = Path(item).resolve()
        if p == out:
            raise BadInput(f"{what} '{path}' is the input '{item}': choose another path")
        if folder and out in p.parents:
            raise BadInput(f"{what} '{path}' holds the input '{item}': choose another folder")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_dir(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder that becomes `path` when the block succeeds."""
    path = Path(path)
    check_writable(path, force)
    parent = path.parent if str(path.parent) else Path(".")
    made = next((a for a in [*reversed(parent.parents), parent] if not a.exists()), None)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    except OSError as e:
        _remove_made(made)
        raise BadInput(f"cannot create output folder '{path}': {e.strerror}") from None
    try:
        tmp.chmod(0o777 & ~_umask())   # mkdtemp makes 0700; a plain mkdir would honour the umask
        yield tmp
        _swap_in(tmp, path, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_made(made)
        raise


def _remove_made(made: Path | None) -> None:
    """Remove the parent folders this run created (empty again after a failure)."""
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def _swap_in(tmp: Path, path: Path, force: bool) -> None:
    """Rename `tmp` to `path`; an existing `path` (allowed by force) is moved aside, then removed. On
    failure the old folder is put back and nothing but `tmp` (removed by the caller) is left."""
    if not (path.exists() or path.is_symlink()):
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise BadInput(f"cannot create output folder '{path}': {e.strerror}") from None
        return
    check_writable(path, force)
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=tmp.parent))
    try:
        os.replace(path, trash / "old")
    except OSError as e:
        trash.rmdir()
        raise BadInput(f"cannot replace output folder '{path}': {e.strerror}") from None
    try:
        os.replace(tmp, path)
    except OSError as e:
        os.replace(trash / "old", path)
        trash.rmdir()
        raise BadInput(f"cannot replace output folder '{path}': {e.strerror}") from None
    shutil.rmtree(trash, ignore_errors=True)


def write_file(path: Path, data: bytes, force: bool) -> None:
    """Write a single file atomically (temp file + rename), refusing to overwrite without force."""
    path = Path(path)
    check_writable(path, force)
    if path.is_dir():
        raise OutputExists(str(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"cannot write '{path}': no such folder '{parent}'")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=parent)
    except OSError as e:
        raise BadInput(f"cannot write '{path}': {e.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes 0600; a plain open would honour the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise BadInput(f"cannot write '{path}': {e.strerror}") from None
        raise
