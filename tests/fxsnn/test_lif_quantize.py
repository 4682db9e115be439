"""`--target lif --quantize W` on the shipped digits MLP: the integer LIF network's accuracy against
the float LIF network, its C bit-exact with the emulator on the host (and on an emulated Cortex-M4
where the Arm toolchain is installed), the emulator's operation counts against formulas evaluated
here, and one-line errors for what fixed point does not support."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_helpers import error_line, run_cli

from mpc.errors import Location, UnsupportedOp
from mpc.fx import snn as fxsnn

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TRAIN, TEST = ROOT / "examples" / "data" / "digits_train.npz", ROOT / "examples" / "data" / "digits_test.npz"
ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")
def test_digits_mlp_lif_int16_c_bit_exact_and_within_a_point_of_float_lif(capsys):
    rc, out, err = run_cli(capsys, "verify", MLP, "--data", TEST, "--calib", TRAIN, "-q", "--json",
                           "--target", "lif", "--timesteps", "16", "--quantize", "16", "--emit", "c")
    assert rc == 0, err
    r = json.loads(out)
    assert r["float_converted_accuracy"] > 0.9   # the float LIF network (interpreter, float kernels)
    assert abs(r["converted_accuracy"] - r["float_converted_accuracy"]) <= 0.01
    assert r["c_samples"] == 540 and r["c_elements"] == 5400 and r["c_mismatches"] == 0
    if ARM:
        assert r["c_cortex_m_mismatches"] == 0 and r["c_cortex_m_samples"] == 32
    layers = [row for row in r["c_ops"]["ops_by_layer"] if row["op"] == "fx.lif"]
    assert [row["compare"] for row in layers] == [4 * 16 * 64, 4 * 16 * 32]   # no refractory: all steps active
    assert all(row["multiply"] == 0 and row["add"] >= 16 * 64 // 2 for row in layers)   # IF: no leak multiply


def test_membrane_readout_over_a_step_count_that_is_not_a_power_of_two_is_one_line(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "convert", MLP, "--calib", TRAIN, "--target", "lif", "--timesteps", "12",
                         "--quantize", "16", "-o", tmp_path / "out")
    line = error_line(err)
    assert rc == 2 and "snn.decode" in line and "power of two, got 12" in line
    assert not (tmp_path / "out").exists()


def test_a_recurrent_weight_is_rejected_by_name():
    values = [SimpleNamespace(name=n) for n in ("x", "theta", "fc1.rec")]
    op = SimpleNamespace(kind="snn.lif", loc=Location(node="/1/Relu"), attrs=None, operands=values)
    with pytest.raises(UnsupportedOp, match="at node ./1/Relu.: recurrent weight @fc1.rec: fx.lif has no recurrent operand"):
        fxsnn.SNN_RULES["snn.lif"](None, op)


def test_poisson_encoding_is_rejected_by_name():
    op = SimpleNamespace(kind="snn.encode", loc=Location(node="/0/Enc"), attrs=SimpleNamespace(mode=fxsnn.EncodeMode.POISSON))
    with pytest.raises(UnsupportedOp, match="constant current only, got mode poisson"):
        fxsnn.SNN_RULES["snn.encode"](None, op)
