"""The emitted MP model.py against an independent float64 reference built from the MP definition.

The reference (tests/mp/mp_reference.py, nothing from mpc.mp or mpc's kernels) evaluates the converted
graph layer by layer from weights.npz: mp.dot is gain·y_MP(x·c, w/c; γ) + offset over rows, mp.conv2d
the same over im2col patches, and the few other ops of the digits models (add, relu, max pooling,
flatten) are written here in a line each. model.py runs in float32, so the two agree to float32
rounding carried through four layers: within 1e-4 of the largest logit (measured: 8e-7 for the MLP,
7e-7 for the CNN, on 32 test samples), while every γ 1% off moves the logits by 1.5e-2 to 2.3e-2.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mpc.cli import main
from mpc.ir import parse

from .mp_reference import patches, y_mp

EX = "examples"
CASES = {
    "mlp": (f"{EX}/models/digits_mlp.onnx", f"{EX}/data/digits_train.npz", f"{EX}/data/digits_test.npz"),
    "cnn": (f"{EX}/models/digits_cnn.onnx", f"{EX}/data/digits_img_train.npz", f"{EX}/data/digits_img_test.npz"),
}


def mp_dot(x, w, gain, offset, a):
    """gain[h]·y_MP(x·c, w[h]/c; γ) + offset[h] over the last axis of x."""
    y = y_mp(x.reshape(-1, x.shape[-1]) * a.c, w / a.c, a.gamma) * gain
    return (y if offset is None else y + offset).reshape(x.shape[:-1] + (w.shape[0],))


def mp_conv2d(x, w, gain, offset, a):
    """The same over the im2col patches of each group; (N, M, OH, OW)."""
    m, cg, kh, kw = w.shape
    mg = m // a.group
    outs = []
    for g in range(a.group):
        rows, oh, ow = patches(x[:, g * cg:(g + 1) * cg], kh, kw, a.strides, a.pads, a.dilations)
        outs.append(y_mp(rows * a.c, w[g * mg:(g + 1) * mg].reshape(mg, -1) / a.c, a.gamma))
    y = np.concatenate(outs, axis=1) * gain + (0.0 if offset is None else offset)
    return y.reshape(x.shape[0], oh, ow, m).transpose(0, 3, 1, 2)


def maxpool2d(x, a):
    assert a.pads == (0, 0, 0, 0) and a.dilations == (1, 1) and not a.ceil_mode, a
    (kh, kw), (sh, sw) = a.kernel, a.strides
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    windows = [x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] for i in range(kh) for j in range(kw)]
    return np.max(windows, axis=0)


REFERENCE = {
    "mp.dot": lambda a, x, w, gain, offset=None: mp_dot(x, w, gain, offset, a),
    "mp.conv2d": lambda a, x, w, gain, offset=None: mp_conv2d(x, w, gain, offset, a),
    "nn.add": lambda a, x, y: x + y,
    "nn.relu": lambda a, x: np.maximum(x, 0.0),
    "nn.maxpool2d": lambda a, x: maxpool2d(x, a),
    "nn.flatten": lambda a, x: x.reshape(x.shape[0], -1) if a.axis == 1 else None,
}


def reference(folder: Path, feeds: dict[str, np.ndarray], gamma_scale: float = 1.0) -> dict[str, np.ndarray]:
    """The converted graph evaluated op by op in float64 with the kernels above (every γ times
    `gamma_scale`, to show the comparison notices a small change)."""
    weights = {k: v.astype(np.float64) for k, v in np.load(folder / "weights.npz").items()}
    graph = parse((folder / "model.mpc").read_text(), dict(np.load(folder / "weights.npz")))
    env = {v.name: feeds[v.name].astype(np.float64) for v in graph.inputs}
    for op in graph.ops:
        args = [weights[v.name] if v.is_weight else env[v.name] for v in op.operands]
        attrs = dataclasses.replace(op.attrs, gamma=op.attrs.gamma * gamma_scale) if op.kind.startswith("mp.") else op.attrs
        env[op.result.name] = REFERENCE[op.kind](attrs, *args)
    return {v.name: env[v.name] for v in graph.outputs}


def _import(folder: Path):
    spec = importlib.util.spec_from_file_location(f"_mp_ref_{folder.parent.name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_py_matches_the_float64_mp_reference(tmp_path, name):
    model, calib, test = CASES[name]
    out = tmp_path / name
    assert main(["convert", model, "--target", "mp", "--calib", calib, "-o", str(out), "-q"]) == 0
    kinds = {line.split("= ")[1].split("(")[0] for line in (out / "model.mpc").read_text().splitlines()
             if line.startswith("  %")}
    assert {"mp.dot"} <= kinds and ("mp.conv2d" in kinds) == (name == "cnn"), kinds
    feeds = {"input": np.load(test)["input"][:32]}
    want = reference(out, feeds)["logits"]
    got = _import(out).run(feeds)["logits"]
    assert got.dtype == np.float32 and got.shape == want.shape
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)
    off = reference(out, feeds, gamma_scale=1.01)["logits"]   # γ 1% off: far outside the tolerance
    assert np.abs(off - got).max() > 10 * 1e-4 * scale
