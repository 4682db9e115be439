"""The quantize pass end to end on the shipped digits models: accuracy against the source
(onnxruntime) and the float converted graph, the C compiled by gcc and run on an emulated Cortex-M
equal to the emulator, the per-tensor report (checked against formulas evaluated here on the
calibration data), the TOML config, one-line errors and byte-identical outputs."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_line, run_cli

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TRAIN, TEST = ROOT / "examples" / "data" / "digits_train.npz", ROOT / "examples" / "data" / "digits_test.npz"
ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None


def verify_json(capsys, *flags) -> dict:
    rc, out, err = run_cli(capsys, "verify", MLP, "--data", TEST, "--calib", TRAIN, "-q", "--json", *flags)
    assert rc == 0, err
    return json.loads(out)


def _check_c(r: dict) -> None:
    assert r["c_samples"] == 540 and r["c_elements"] == 5400 and r["c_mismatches"] == 0
    if ARM:   # .ci/run installs the Arm toolchain and qemu; without them the JSON says why it did not run
        assert r["c_cortex_m_mismatches"] == 0 and r["c_cortex_m_samples"] == 32
        assert 0 < r["c_cortex_m_ram_bytes"] < r["c_cortex_m_flash_bytes"] < 64 * 1024
    else:
        assert "not run" in r["c_cortex_m"]


def test_float_int8_within_one_point_of_source_and_c_bit_exact(capsys):
    r = verify_json(capsys, "--target", "float", "--quantize", "8", "--emit", "c")
    assert r["source_accuracy"] > 0.9
    assert r["converted_accuracy"] >= r["source_accuracy"] - 0.01
    assert r["float_converted_accuracy"] == pytest.approx(r["source_accuracy"], abs=1e-9)   # canonicalize is exact
    _check_c(r)


def test_mp_int16_within_half_a_point_of_float_mp_and_c_bit_exact(capsys):
    r = verify_json(capsys, "--target", "mp", "--quantize", "16", "--emit", "c")
    assert r["converted_accuracy"] >= r["float_converted_accuracy"] - 0.005
    assert r["float_converted_agreement"] >= 0.99
    _check_c(r)


def test_report_rows_match_formulas_and_config_overrides(tmp_path, capsys):
    cfg = tmp_path / "q.toml"
    cfg.write_text('width = 12\nrounding = "floor"\n[tensors]\ninput = { width = 8, frac = 7 }\n')
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", "--quantize-config", cfg, "--calib", TRAIN,
                         "--emit", "c", "-o", tmp_path / "out", "-q")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {r["tensor"]: r for r in report["sections"]["quantize"]}
    x = np.load(TRAIN)["input"].astype(np.float64)   # --calib: the whole file
    hi = 127 / 128                                           # fx<8,7>: largest value
    assert rows["input"]["format"] == "fx<8,7>"
    assert rows["input"]["saturating"] == pytest.approx(float((x > hi).mean()))
    assert rows["input"]["headroom_bits"] == pytest.approx(math.log2(hi / x.max()), abs=1e-3)
    assert any("'input'" in n and "saturates" in n for n in report["sections"]["Notes"])
    w = rows["@0.weight.T"]
    assert w["format"].startswith("fx<12,") and w["saturating"] == 0.0
    assert "rounding = floor" in (tmp_path / "out" / "model.mpc").read_text()
    assert report["sections"]["c"]["ops_per_inference"]["divide"] == 0
    assert "mpc_run(const int8_t *in" in (tmp_path / "out" / "c" / "model.h").read_text()


@pytest.mark.parametrize("text, message", [
    ("widht = 8\n", "unknown key 'widht'"),
    ('overflow = "clamp"\n', "overflow must be one of saturate, wrap"),
    ("[tensors]\nx = { width = 99 }\n", "tensors.x.width must be an integer from 2 to 32"),
    ("width = \n", "not valid TOML"),
])
def test_bad_config_is_one_line_error(tmp_path, capsys, text, message):
    cfg = tmp_path / "q.toml"
    cfg.write_text(text)
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", "--quantize-config", cfg,
                         "-o", tmp_path / "o", "-q")
    assert rc == 2 and message in error_line(err)


def test_float_c_agrees_with_the_interpreter(capsys):
    r = verify_json(capsys, "--target", "float", "--emit", "c")
    assert r["c_samples"] == 540 and r["c_mismatches"] == 0 and r["c_max_abs_err"] < 1e-4


def test_mp_graph_to_c_without_quantize_is_rejected_by_name(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "mp", "--gamma", "8", "--emit", "c",
                         "-o", tmp_path / "o", "-q")
    assert rc == 2 and "mp.dot" in error_line(err) and "c backend" in error_line(err)


def test_quantized_conversion_is_byte_identical(tmp_path, capsys):
    for name in ("a", "b"):
        rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", "--quantize", "8", "--emit", "c",
                             "--calib", TRAIN, "-o", tmp_path / name, "-q")
        assert rc == 0, err
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_quantized_conversion_emits_c_by_default(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", "--quantize", "8", "--calib", TRAIN,
                         "-o", tmp_path / "o", "-q")
    assert rc == 0, err
    assert (tmp_path / "o" / "c" / "model.c").is_file() and not (tmp_path / "o" / "model.py").exists()


@pytest.mark.parametrize("argv, message", [
    (["finetune", MLP, "--target", "mp", "--quantize", "8", "--data", TRAIN, "-o", "ft"],
     "--quantize does not apply to finetune"),
    (["verify", "some_folder", "--source", MLP, "--quantize", "8"], "--quantize does not apply with --source"),
    (["convert", MLP, "--target", "float", "--quantize", "40", "-o", "x"], "--quantize"),
])
def test_quantize_flag_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and message in error_line(err)
