"""Test-wide setup: model.py's kernel cache goes to a temporary folder, never to ~/.cache.

Session-scoped so that module-scoped fixtures that import model.py in this process see it too, and
subprocesses inherit it; the kernels then compile once per session and are shared by every test.
"""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def kernel_cache_home(tmp_path_factory):
    """XDG_CACHE_HOME pointed at a fresh temporary folder for the whole session."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield os.environ["XDG_CACHE_HOME"]
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved
