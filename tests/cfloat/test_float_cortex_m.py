"""Float C (no --quantize) on the emulated Cortex-M4: the firmware (soft-float ABI, -mcpu=cortex-m4
-mthumb -Os) computes, bit for bit, the f32 outputs of the host C (gcc -O2), within rounding of the
interpreter; inputs reach the firmware as exact hexadecimal float literals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from mpc.backends.c.cortexm import driver

ROOT = Path(__file__).resolve().parents[2]
TEST = ROOT / "examples" / "data" / "digits_test.npz"
ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None


def test_float_inputs_are_exact_hex_literals():
    x = np.array([[0.1, -3.5, 1e-30]], np.float32)
    text = driver(x, "float", "float")
    lits = text.split("{", 2)[2].split("}")[0].split(", ")
    assert [np.float32(float.fromhex(v.rstrip("f"))) for v in lits] == x[0].tolist()
    assert "memcpy(&bits, &out[i]" in text


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")
@pytest.mark.parametrize("model", ["digits_mlp.onnx", "digits_cnn.onnx"])
def test_float_c_on_cortex_m4_equals_host_c(capsys, model):
    data = TEST if model == "digits_mlp.onnx" else ROOT / "examples" / "data" / "digits_img_test.npz"
    rc, out, err = run_cli(capsys, "verify", ROOT / "examples" / "models" / model, "--data", data,
                           "--target", "float", "--emit", "c", "-q", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["c_mismatches"] == 0 and r["c_max_abs_err"] < 1e-4
    if not ARM:   # .ci/run installs the Arm toolchain and qemu
        assert "not run" in r["c_cortex_m"]
        return
    assert r["c_cortex_m_samples"] == 32 and r["c_cortex_m_mismatches"] == 0
    assert r["c_cortex_m_max_abs_err"] < 1e-4
    assert 0 < r["c_cortex_m_ram_bytes"] < r["c_cortex_m_flash_bytes"] < 256 * 1024
