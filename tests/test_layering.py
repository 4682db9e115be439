"""Layering: passes and backends never import the driver (cli, compiler, verify, oracle, finetune,
sweep, runner), not even inside a function, and importing the passes loads none of it."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ("mpc.compiler", "mpc.cli", "mpc.verify", "mpc.oracle", "mpc.finetune", "mpc.sweep", "mpc.runner",
          "mpc.driver")
PACKAGES = {"passes": "mpc.passes", "backends": "mpc.backends"}   # folder -> installed package


def _is_driver(module: str) -> bool:
    return any(module == d or module.startswith(d + ".") for d in DRIVER)


def _imported(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import anywhere in the tree, relative ones resolved against `package`;
    `from a import b` counts as both a and a.b, and import_module('x') / __import__('x') as x."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def driver_imports(source: str, package: str) -> list[tuple[int, str]]:
    """The driver modules a source file imports, with their lines."""
    return [(line, m) for line, m in _imported(ast.parse(source), package) if _is_driver(m)]


def test_the_scanner_finds_every_form_of_import():
    source = '''
import mpc.cli
from mpc import compiler
from ..verify import verify
from .. import oracle as o
def f():
    from mpc.finetune import finetune
    import importlib
    importlib.import_module("mpc.sweep")
class C:
    def g(self):
        __import__("mpc.runner")
        from mpc.driver.report import to_json
from mpc.ir import Graph
from . import fold_constants
from mpc.compilers_unrelated import x
'''
    found = driver_imports(source, "mpc.passes")
    assert sorted(m for _, m in found) == ["mpc.cli", "mpc.compiler", "mpc.driver.report", "mpc.driver.report.to_json",
                                           "mpc.finetune", "mpc.finetune.finetune", "mpc.oracle", "mpc.runner",
                                           "mpc.sweep", "mpc.verify", "mpc.verify.verify"]


SOURCES = sorted(p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_passes_and_backends_do_not_import_the_driver(path):
    folder = path.relative_to(ROOT).parts[0]
    sub = path.relative_to(ROOT / folder).parent.parts
    package = ".".join([PACKAGES[folder], *sub])
    found = driver_imports(path.read_text(), package)
    assert not found, f"{path.relative_to(ROOT)} imports the driver: " + \
        ", ".join(f"line {line}: {m}" for line, m in found)


def test_importing_the_passes_and_backends_loads_no_driver_module():
    code = ("import sys, mpc.passes, mpc.backends, mpc.passmanager\n"
            "print(','.join(sorted(m for m in sys.modules if m.startswith('mpc.'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.strip().split(",")
    assert "mpc.passes.mp_calibrate" in loaded and "mpc.backends.numpy_backend" in loaded   # it did import them
    assert [m for m in loaded if _is_driver(m)] == []
