"""What users read stands alone and describes only what exists: --help, `mpc passes`, target summaries,
the package metadata and the docs in the repository name no private notes and no missing targets."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import mpc
from mpc.cli import build_parser, main
from mpc.driver.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = re.compile(r"METHODS|\.\./shared|[Ss]eed 0\d\d")
EMIT = re.compile(r"--emit ([A-Za-z_][\w,]*)")   # every backend a text names must exist (verilog does now)


def _missing_backends(text: str) -> set[str]:
    from mpc.backends import BACKENDS
    return {b for m in EMIT.finditer(text) for b in m.group(1).split(",") if b and b not in BACKENDS}


def test_help_passes_and_targets_describe_what_exists(capsys):
    texts = [build_parser().format_help(), mpc.__doc__, (ROOT / "pyproject.toml").read_text()]
    texts += [t.summary for t in TARGETS.values()]
    assert main(["passes"]) == 0
    texts.append(capsys.readouterr().out)
    for text in texts:
        assert not PRIVATE.search(text), text
        assert _missing_backends(text) == set(), text


@pytest.mark.parametrize("doc", ["README.md", "examples/README.md", ".ci/run"])
def test_repository_docs_point_nowhere_outside(doc):
    text = (ROOT / doc).read_text()
    assert not PRIVATE.search(text)
    assert _missing_backends(text) == set()


def test_module_docstrings_cite_papers_not_private_notes():
    for path in sorted([*ROOT.glob("mpc/**/*.py"), *ROOT.glob("passes/*.py"), *ROOT.glob("backends/*.py")]):
        assert not PRIVATE.search(path.read_text().split('"""')[1] if '"""' in path.read_text() else ""), path
