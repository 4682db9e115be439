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
MISSING = re.compile(r"verilog", re.IGNORECASE)   # fixed point (quantize, --emit c) and spiking targets exist now


def test_help_passes_and_targets_describe_what_exists(capsys):
    texts = [build_parser().format_help(), mpc.__doc__, (ROOT / "pyproject.toml").read_text()]
    texts += [t.summary for t in TARGETS.values()]
    assert main(["passes"]) == 0
    texts.append(capsys.readouterr().out)
    for text in texts:
        assert not PRIVATE.search(text), text
        assert not MISSING.search(text), text


@pytest.mark.parametrize("doc", ["README.md", "examples/README.md", ".ci/run"])
def test_repository_docs_point_nowhere_outside(doc):
    text = (ROOT / doc).read_text()
    assert not PRIVATE.search(text)
    # the open EDA flow (mpc.eda: Yosys, iverilog, .ci/run installs them) exists; a Verilog backend not yet
    assert not re.search(r"--emit verilog|verilog backend", text, re.IGNORECASE)


def test_module_docstrings_cite_papers_not_private_notes():
    for path in sorted([*ROOT.glob("mpc/**/*.py"), *ROOT.glob("passes/*.py"), *ROOT.glob("backends/*.py")]):
        assert not PRIVATE.search(path.read_text().split('"""')[1] if '"""' in path.read_text() else ""), path
