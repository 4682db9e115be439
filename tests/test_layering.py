"""Layering: passes and backends never import the driver (mpc.driver: cli, compiler, verify, oracle,
sweep, runner, ...; the `mpc.cli` entry point; the training loops in mpc.train), not even inside a
function, and importing the passes loads none of it."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ("mpc.driver", "mpc.cli", "mpc.train")
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
from mpc.driver import compiler
from ..driver.verify import verify
from ..driver import oracle as o
def f():
    from mpc.train.finetune import finetune
    import importlib
    importlib.import_module("mpc.driver.sweep")
class C:
    def g(self):
        __import__("mpc.driver.runner")
        from mpc.driver.report import to_json
from mpc.ir import Graph
from . import fold_constants
from mpc.compilers_unrelated import x
'''
    found = driver_imports(source, "mpc.passes")
    assert sorted(m for _, m in found) == [
        "mpc.cli", "mpc.driver", "mpc.driver", "mpc.driver.compiler", "mpc.driver.oracle", "mpc.driver.report",
        "mpc.driver.report.to_json", "mpc.driver.runner", "mpc.driver.sweep", "mpc.driver.verify",
        "mpc.driver.verify.verify", "mpc.train.finetune", "mpc.train.finetune.finetune"]


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


# The pass manager imports the explicit list in mpc/passes/__init__.py (lazily) to fill its registry,
# and every pass imports the manager to register itself: that one edge is the registry's design.
REGISTRY_LOAD = ("mpc.passmanager", "mpc.passes")
FOLDERS = {"mpc": "mpc", "passes": "mpc.passes", "backends": "mpc.backends"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            mods[".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])] = path
    return mods


def test_no_import_cycles_even_through_imports_inside_functions():
    import networkx as nx
    mods = _modules()

    def owner(name: str) -> str | None:   # the module a dotted name lives in (`from m import f` -> m)
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = nx.DiGraph()
    for module, path in mods.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _, name in _imported(ast.parse(path.read_text()), package):
            target = owner(name)
            if target and target != module and (module, target) != REGISTRY_LOAD:
                graph.add_edge(module, target)
    assert len(graph) > 40   # the scan saw the package
    assert sorted(sorted(c) for c in nx.simple_cycles(graph)) == []
