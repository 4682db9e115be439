"""The PyTorch paths as a new user meets them: a factory module in the current folder, a missing
--input-shape, and recurrent layers (imported, their zero initial states built from the batch dim dropped)."""
from __future__ import annotations

import json
import textwrap

import pytest
from cli_helpers import error_line, run_cli

torch = pytest.importorskip("torch")


@pytest.fixture
def factory_pkg(tmp_path, monkeypatch):
    """A package `mpctestpkg9` in tmp_path (the current folder), not on sys.path."""
    (tmp_path / "mpctestpkg9").mkdir()
    (tmp_path / "mpctestpkg9" / "__init__.py").write_text("")
    (tmp_path / "mpctestpkg9" / "nets.py").write_text(textwrap.dedent("""
        import torch

        def mlp():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())

        class Recurrent(torch.nn.Module):
            def __init__(self, layer):
                super().__init__()
                self.rnn = layer(4, 8, batch_first=True)

            def forward(self, x):
                return self.rnn(x)[0]

        def lstm():
            return Recurrent(torch.nn.LSTM)

        def gru():
            return Recurrent(torch.nn.GRU)
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "mpctestpkg9", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "mpctestpkg9.nets", raising=False)
    return tmp_path


def test_factory_in_the_current_folder(factory_pkg, capsys):
    import sys
    path = list(sys.path)
    rc, _, err = run_cli(capsys, "convert", "mpctestpkg9.nets:mlp", "--input-shape", "1,4", "--target", "float",
                         "-o", "out", "-q")
    assert (rc, err) == (0, "")
    assert (factory_pkg / "out" / "model.py").is_file()
    assert sys.path == path   # the current folder is on sys.path only while the factory is imported


def test_missing_input_shape_names_the_flag(factory_pkg, capsys):
    rc, _, err = run_cli(capsys, "convert", "mpctestpkg9.nets:mlp", "--target", "float", "-o", "out")
    assert rc == 2
    assert error_line(err) == ("mpctestpkg9.nets:mlp: a PyTorch model needs --input-shape "
                               "(batch first, e.g. --input-shape 1,64)")


@pytest.mark.parametrize("kind,op", [("lstm", "LSTM"), ("gru", "GRU")])
def test_recurrent_layers_convert_and_verify(factory_pkg, capsys, kind, op):
    """Recurrent layers import (mpc.frontend.onnx_ops_rnn; they were refused by name before) and the float
    target agrees with onnxruntime."""
    rc, _, err = run_cli(capsys, "convert", f"mpctestpkg9.nets:{kind}", "--input-shape", "1,3,4",
                         "--target", "float", "-o", "out")
    assert rc == 0, err
    assert f"nn.{kind}" in (factory_pkg / "out" / "model.mpc").read_text()
    rc, out, err = run_cli(capsys, "verify", f"mpctestpkg9.nets:{kind}", "--input-shape", "1,3,4",
                           "--target", "float", "--samples", "16", "--json", "-q")
    assert (rc, err) == (0, ""), err
    assert json.loads(out)["max_rel_err"] <= 1e-5
