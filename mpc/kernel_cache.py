"""One numba kernel cache per machine, shared by every emitted model.py.

model.py embeds the source of its compiled kernels (mpc.kernels_nb, mpc.mp) as text and calls
`load_kernels` (copied into model.py with this docstring's function, so the file stands alone).
The text is written once to `<cache>/mpc/kernels/<digest>/mpc_kernels_<digest>.py`, with cache =
$XDG_CACHE_HOME or ~/.cache and digest = the first 16 hex digits of the text's SHA-256, and imported
from there as module `mpc_kernels_<digest>`. numba caches compiled kernels beside that file and, in a
later process, finds the module again by that name; so every model.py that embeds the same kernel
text, in any folder, loads the kernels the first one compiled instead of compiling them again.
Where the cache folder cannot be written, the text runs in-process with numba's disk cache off.
"""


def load_kernels(source):
    """The module built from kernel `source`, shared through the user cache (see mpc.kernel_cache).

    The file is written only when missing or different (temp file + os.replace, so concurrent
    writers never leave a partial file): rewriting it would change its time stamp and make numba
    throw its cache away.
    """
    import hashlib
    import importlib.util
    import os
    import sys
    import types
    from pathlib import Path

    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"mpc_kernels_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base, "mpc", "kernels", digest, name + ".py")
    try:
        if not path.is_file() or path.read_text(encoding="utf-8") != source:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_text(source, encoding="utf-8")
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(name, path)
    except OSError:  # no writable cache: compile in this process only
        spec = None
    module = types.ModuleType(name) if spec is None else importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache imports the module by name when it loads a kernel
    try:
        if spec is None:  # the text is mpc's own kernel source, embedded in model.py
            exec(compile(source.replace("cache=True", "cache=False"), f"<{name}>", "exec"), module.__dict__)  # noqa: S102
        else:
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
