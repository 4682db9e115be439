"""The analytical iCE40 estimate in resources.json (backends/verilog/lutmodel.py) against Yosys
`synth_ice40 -dsp` run here with a plain script: LUT4, flip-flops (and SB_CARRY for MP) within 25 % for a
small MP layer and a small MAC layer; the synthesized MP layer has no DSP and no multiplier cell."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mpc.backends.base import lower
from mpc.backends.verilog import chain, configured, module_name, render_rtl
from mpc.backends.verilog.resources import resources

from mpc.ir import parse

pytestmark = pytest.mark.skipif(shutil.which("yosys") is None, reason="needs yosys (installed by .ci/run)")

MP = """graph @mp(%x: f32[N,4]) -> (%y: f32[N,2]) {
  weight @w : fx<8,6>[2,4]
  weight @s : i8[2,2]
  weight @sg : i8[2,2]
  %0 = fx.quantize(%x) {to = "fx<8,5>"} : fx<8,5>[N,4]
  %1 = fx.mp_dot(%0, @w, @s, @sg) {gamma = 100, to = "fx<12,8>", c_shift = -1} : fx<12,8>[N,2]
  %y = fx.dequantize(%1) : f32[N,2]
}"""

MAC = """graph @mac(%x: f32[N,7]) -> (%y: f32[N,6]) {
  weight @m : fx<6,4>[7,6]
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,7]
  %1 = fx.matmul(%0, @m) {to = "fx<14,8>", overflow = wrap} : fx<14,8>[N,6]
  %y = fx.dequantize(%1) : f32[N,6]
}"""


def _weights(kind: str) -> dict:
    rng = np.random.default_rng(0)
    if kind == "mac":
        return {"m": rng.integers(-32, 32, (7, 6)).astype(np.int8)}
    return {"w": rng.integers(-128, 128, (2, 4)).astype(np.int8), "s": rng.integers(0, 6, (2, 2)).astype(np.int8),
            "sg": rng.choice([1, -1], (2, 2)).astype(np.int8)}


def _layer(text: str, kind: str, p: int, tmp: Path) -> tuple[dict, dict[str, int]]:
    """(the layer's resources.json entry, cells by type from our own `synth_ice40 -dsp; stat`)."""
    lowered, _ = lower(configured(p), parse(text, _weights(kind)))
    name, op = next((module_name(i, op), op) for i, op in enumerate(chain(lowered)[1]))
    (tmp / f"{name}.v").write_text(render_rtl(lowered)[f"{name}.v"])
    script = f"read_verilog -sv {name}.v; synth_ice40 -dsp -top {name}; tee -o stat.txt stat"
    subprocess.run(["yosys", "-q", "-p", script], check=True, capture_output=True, cwd=tmp)
    text = (tmp / "stat.txt").read_text()
    cells = {m[1]: int(m[2]) for m in re.finditer(r"^\s+(\$?\w+)\s+(\d+)\s*$", text, re.MULTILINE)}
    return resources(lowered, [(name, op)])["layers"][name], cells


def _close(estimate: int, measured: int) -> bool:
    return abs(estimate - measured) <= 0.25 * measured


@pytest.mark.parametrize("text, kind, p", [(MP, "mp", 1), (MAC, "mac", 2)])
def test_estimate_within_25_percent_of_yosys(tmp_path, text, kind, p):
    r, cells = _layer(text, kind, p, tmp_path)
    est, ff = r["estimate_ice40"], sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    assert _close(est["LUT"], cells["SB_LUT4"]), (est, cells)
    assert _close(r["flip_flops"], ff), (r["flip_flops"], ff)
    assert est["DSP"] == cells.get("SB_MAC16", 0)
    if kind == "mp":   # multiplierless: no DSP block and no multiplier cell left after synthesis
        assert _close(est["CARRY"], cells["SB_CARRY"]), (est, cells)
        assert est["DSP"] == 0 and not any("mul" in c.lower() or "MAC" in c for c in cells), cells
