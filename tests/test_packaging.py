"""pyproject.toml lists every package of the source tree, so a wheel (not only an editable install) has them all."""
from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _tree_packages() -> set[str]:
    """Every folder with an __init__.py under mpc/, passes/ and backends/, by its import name."""
    found = set()
    for top, name in (("mpc", "mpc"), ("passes", "mpc.passes"), ("backends", "mpc.backends")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    return found


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _tree_packages() - listed == set()
    assert listed - _tree_packages() == set()


def test_tests_do_not_import_a_tests_package():
    """CI runs plain `pytest`, which puts tests/ (not the repository root) on sys.path: `from tests.x import`
    works only under `python -m pytest`; helpers are imported as `cli_helpers`, `frontend.models`, ..."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
                 if any(line.startswith(("from tests.", "import tests")) for line in p.read_text().splitlines())]
    assert offenders == []
