"""Spatial, normalization and activation ops against onnxruntime, attribute corner by corner.

Each case is a one-node ONNX model in ONNX's text syntax; the interpreter (mpc.ir.run) must match
onnxruntime on seeded random data (max abs error within 2e-5 * max(1, |output|)), and so must the
model.py the NumPy backend writes for the imported graph.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from frontend import models as M  # tests/frontend/models.py (pytest puts tests/ on sys.path)
from mpc.backends.numpy_backend import render_model

from mpc.frontend import load_onnx


def _one(op: str, x: str, y: str, attrs: str = "", extra: str = "", inputs: str = "x") -> str:
    attr = f" <{attrs}>" if attrs else ""
    return f"g (float{x} x{extra}) => (float{y} y) {{ y = {op}{attr} ({inputs}) }}"


X4 = "[2, 3, 7, 6]"
# name -> (graph text, weights, constants, opset)
CASES = {
    "conv1d_pads_stride_bias": (_one("Conv", "[2, 4, 9]", "[2, 6, 5]", "strides = [2], pads = [1, 2]",
                                     ", float[6, 4, 3] w, float[6] b", "x, w, b"), ("w", "b"), {}, 17),
    "conv1d_depthwise_dilated": (_one("Conv", "[2, 4, 9]", "[2, 4, 5]", "group = 4, dilations = [2]",
                                      ", float[4, 1, 3] w", "x, w"), ("w",), {}, 17),
    "conv1d_grouped_same_upper": (_one("Conv", "[2, 4, 9]", "[2, 6, 5]", 'group = 2, strides = [2], '
                                       'auto_pad = "SAME_UPPER"', ", float[6, 2, 4] w", "x, w"), ("w",), {}, 17),
    "conv1d_same_lower": (_one("Conv", "[2, 4, 9]", "[2, 6, 9]", 'auto_pad = "SAME_LOWER"',
                               ", float[6, 4, 4] w", "x, w"), ("w",), {}, 17),
    "conv3d": (_one("Conv", "[1, 2, 5, 6, 5]", "[1, 3, 4, 3, 6]",
                    "strides = [1, 2, 1], pads = [1, 0, 1, 0, 1, 1], dilations = [2, 1, 1]",
                    ", float[3, 2, 2, 3, 2] w, float[3] b", "x, w, b"), ("w", "b"), {}, 17),
    "maxpool1d_ceil_dilated": (_one("MaxPool", "[2, 3, 10]", "[2, 3, 5]",
                                    "kernel_shape = [3], strides = [2], pads = [1, 1], dilations = [2], ceil_mode = 1"),
                               (), {}, 17),
    "maxpool3d": (_one("MaxPool", "[1, 2, 4, 5, 6]", "[1, 2, 2, 2, 3]", "kernel_shape = [2, 2, 2], strides = [2, 2, 2]"),
                  (), {}, 17),
    "maxpool2d_dilated_storage_order": (_one("MaxPool", X4, "[2, 3, 5, 4]",
                                             "kernel_shape = [2, 2], dilations = [2, 2], storage_order = 1"),
                                        (), {}, 17),
    "avgpool1d_include_pad": (_one("AveragePool", "[2, 3, 9]", "[2, 3, 5]",
                                   "kernel_shape = [3], strides = [2], pads = [1, 1], count_include_pad = 1"),
                              (), {}, 17),
    "avgpool3d_ceil": (_one("AveragePool", "[1, 2, 5, 5, 4]", "[1, 2, 3, 3, 2]",
                            "kernel_shape = [2, 2, 2], strides = [2, 2, 2], ceil_mode = 1"), (), {}, 17),
    "avgpool2d_dilated": (_one("AveragePool", X4, "[2, 3, 4, 5]",
                               "kernel_shape = [2, 2], dilations = [2, 1], pads = [0, 0, 1, 0]"), (), {}, 19),
    "avgpool1d_same_upper": (_one("AveragePool", "[2, 3, 9]", "[2, 3, 5]",
                                  'kernel_shape = [3], strides = [2], auto_pad = "SAME_UPPER"'), (), {}, 17),
    "global_maxpool_3d": (_one("GlobalMaxPool", "[2, 3, 4, 5, 2]", "[2, 3, 1, 1, 1]"), (), {}, 17),
    "global_maxpool_1d": (_one("GlobalMaxPool", "[2, 3, 4]", "[2, 3, 1]"), (), {}, 17),
    "global_avgpool_1d": (_one("GlobalAveragePool", "[2, 3, 4]", "[2, 3, 1]"), (), {}, 17),
    "conv_transpose2d_all": (_one("ConvTranspose", "[2, 4, 4, 3]", "[2, 6, 9, 5]",
                                  "group = 2, strides = [2, 2], pads = [1, 0, 0, 1], output_padding = [1, 1], "
                                  "dilations = [2, 1]", ", float[4, 3, 2, 2] w, float[6] b", "x, w, b"),
                             ("w", "b"), {}, 17),
    "conv_transpose1d_output_shape": (_one("ConvTranspose", "[2, 3, 5]", "[2, 2, 10]",
                                           "strides = [2], output_shape = [10]", ", float[3, 2, 3] w", "x, w"),
                                      ("w",), {}, 17),
    "conv_transpose1d_same_upper": (_one("ConvTranspose", "[2, 3, 5]", "[2, 2, 10]",
                                         'strides = [2], auto_pad = "SAME_UPPER"', ", float[3, 2, 4] w", "x, w"),
                                    ("w",), {}, 17),
    "conv_transpose3d": (_one("ConvTranspose", "[1, 2, 3, 2, 3]", "[1, 2, 4, 4, 4]", "strides = [1, 2, 1]",
                              ", float[2, 2, 2, 2, 2] w", "x, w"), ("w",), {}, 17),
    "layernorm_last": (_one("LayerNormalization", "[2, 3, 8]", "[2, 3, 8]", "epsilon = 0.001",
                            ", float[8] s, float[8] b", "x, s, b"), ("s", "b"), {}, 17),
    "layernorm_axis1_nobias": (_one("LayerNormalization", "[2, 3, 4, 5]", "[2, 3, 4, 5]", "axis = 1",
                                    ", float[3, 4, 5] s", "x, s"), ("s",), {}, 17),
    "instancenorm": (_one("InstanceNormalization", X4, X4, "epsilon = 0.01", ", float[3] s, float[3] b", "x, s, b"),
                     ("s", "b"), {}, 17),
    "groupnorm_21": (_one("GroupNormalization", "[2, 4, 5, 3]", "[2, 4, 5, 3]", "num_groups = 2, epsilon = 0.01",
                          ", float[4] s, float[4] b", "x, s, b"), ("s", "b"), {}, 21),
    "lrn_odd": (_one("LRN", "[2, 5, 3, 3]", "[2, 5, 3, 3]", "size = 3, alpha = 0.01, beta = 0.5, bias = 2.0"),
                (), {}, 17),
    "erf": (_one("Erf", X4, X4), (), {}, 17),
    "gelu_exact": (_one("Gelu", X4, X4), (), {}, 20),
    "gelu_tanh": (_one("Gelu", X4, X4, 'approximate = "tanh"'), (), {}, 20),
    "prelu_channel": (_one("PRelu", X4, X4, "", ", float[3, 1, 1] s", "x, s"), ("s",), {}, 17),
    "prelu_scalar": (_one("PRelu", X4, X4, "", ", float[1] s", "x, s"), ("s",), {}, 17),
    "prelu_last": (_one("PRelu", X4, X4, "", ", float[6] s", "x, s"), ("s",), {}, 17),
    "log_softmax": (_one("LogSoftmax", X4, X4, "axis = 1"), (), {}, 17),
    "log_softmax_default": (_one("LogSoftmax", X4, X4), (), {}, 17),
    "hardmax": (_one("Hardmax", X4, X4, "axis = 2"), (), {}, 17),
    "hard_sigmoid": (_one("HardSigmoid", X4, X4, "alpha = 0.3, beta = 0.4"), (), {}, 17),
    "hard_swish": (_one("HardSwish", X4, X4), (), {}, 17),
    "softplus": (_one("Softplus", X4, X4), (), {}, 17),
    "softsign": (_one("Softsign", X4, X4), (), {}, 17),
    "elu": (_one("Elu", X4, X4, "alpha = 0.7"), (), {}, 17),
    "selu": (_one("Selu", X4, X4), (), {}, 17),
    "celu": (_one("Celu", X4, X4, "alpha = 0.5"), (), {}, 17),
    "mish": (_one("Mish", X4, X4), (), {}, 18),
    "thresholded_relu": (_one("ThresholdedRelu", X4, X4, "alpha = 0.3"), (), {}, 17),
}


def _resize(attrs: str, x: str, y: str, scales=None, sizes=None, opset: int = 17):
    consts = {"roi": np.zeros(0, np.float32)}
    if sizes is not None:
        consts["sizes"] = np.array(sizes, np.int64)
        text = _one("Resize", x, y, attrs, ", float[0] roi, int64[4] sizes".replace("[4]", f"[{len(sizes)}]"),
                    "x, roi, , sizes")
    else:
        consts["scales"] = np.array(scales, np.float32)
        text = _one("Resize", x, y, attrs, f", float[0] roi, float[{len(scales)}] scales", "x, roi, scales")
    return text, (), consts, opset


RESIZES = {
    "nearest_up_default": ("", X4, "[2, 3, 14, 18]", [1, 1, 2, 3]),
    "nearest_down_floor_asym": ('nearest_mode = "floor", coordinate_transformation_mode = "asymmetric"', X4,
                                "[2, 3, 3, 4]", [1, 1, 0.5, 0.7]),
    "nearest_ceil_align": ('nearest_mode = "ceil", coordinate_transformation_mode = "align_corners"', X4,
                           "[2, 3, 10, 4]", [1, 1, 1.5, 0.7]),
    "nearest_prefer_ceil_tf": (('nearest_mode = "round_prefer_ceil", '
                               'coordinate_transformation_mode = "tf_half_pixel_for_nn"'), X4, "[2, 3, 10, 9]",
                               [1, 1, 1.5, 1.5]),
    "linear_half_pixel": ('mode = "linear"', X4, "[2, 3, 14, 9]", [1, 1, 2, 1.5]),
    "linear_align_corners": ('mode = "linear", coordinate_transformation_mode = "align_corners"', X4,
                             "[2, 3, 10, 3]", [1, 1, 1.5, 0.6]),
    "linear_asymmetric": ('mode = "linear", coordinate_transformation_mode = "asymmetric"', X4, "[2, 3, 14, 3]",
                          [1, 1, 2, 0.5]),
    "linear_pytorch_half_pixel": ('mode = "linear", coordinate_transformation_mode = "pytorch_half_pixel"', X4,
                                  "[2, 3, 1, 5]", [1, 1, 0.2, 0.9]),
    "cubic_up_half_pixel": ('mode = "cubic"', X4, "[2, 3, 14, 9]", [1, 1, 2, 1.5]),
    "cubic_down_exclude_outside": ('mode = "cubic", cubic_coeff_a = -0.5, exclude_outside = 1', X4,
                                   "[2, 3, 3, 4]", [1, 1, 0.5, 0.7]),
    "cubic_align_corners": ('mode = "cubic", coordinate_transformation_mode = "align_corners"', X4,
                            "[2, 3, 14, 3]", [1, 1, 2, 0.5]),
    "linear_1d": ('mode = "linear"', "[2, 3, 7]", "[2, 3, 17]", [1, 1, 2.5]),
    "linear_3d": ('mode = "linear"', "[1, 2, 3, 4, 2]", "[1, 2, 6, 6, 4]", [1, 1, 2, 1.5, 2]),
}
for _n, (_a, _x, _y, _s) in RESIZES.items():
    CASES["resize_" + _n] = _resize(_a, _x, _y, scales=_s)
CASES["resize_sizes_linear"] = _resize('mode = "linear"', X4, "[2, 3, 4, 11]", sizes=[2, 3, 4, 11])
CASES["resize_sizes_symmetric"] = _resize('mode = "linear", coordinate_transformation_mode = "half_pixel_symmetric"',
                                          X4, "[2, 3, 5, 10]", sizes=[2, 3, 5, 10], opset=19)
CASES["resize_sizes_not_smaller"] = _resize('keep_aspect_ratio_policy = "not_smaller"', X4, "[2, 3, 12, 10]",
                                           sizes=[2, 3, 10, 10], opset=18)
CASES["resize_sizes_not_larger_linear"] = _resize('mode = "linear", keep_aspect_ratio_policy = "not_larger", '
                                                  'axes = [2, 3]', X4, "[2, 3, 5, 4]", sizes=[5, 5], opset=18)
CASES["resize_sizes_axes_nearest"] = (
    _one("Resize", X4, "[2, 3, 10, 4]", "axes = [2, 3]", ", float[0] roi, int64[2] sizes", "x, roi, , sizes"),
    (), {"roi": np.zeros(0, np.float32), "sizes": np.array([10, 4], np.int64)}, 18)

# a MaxPool with its Indices output: two graph outputs
INDICES = {
    "maxpool2d_indices": ("[2, 3, 7, 6]", "kernel_shape = [3, 2], strides = [2, 2], pads = [1, 0, 1, 0]"),
    "maxpool2d_indices_column_major": ("[2, 3, 7, 6]", "kernel_shape = [2, 2], storage_order = 1"),
    "maxpool1d_indices": ("[2, 3, 9]", "kernel_shape = [3], strides = [2], ceil_mode = 1"),
    "maxpool3d_indices": ("[1, 2, 4, 4, 3]", "kernel_shape = [2, 2, 2], dilations = [1, 2, 1]"),
}
for _n, (_x, _a) in INDICES.items():
    CASES[_n] = (f"g (float{_x} x) => (float y, int64 i) {{ y, i = MaxPool <{_a}> (x) }}", (), {}, 17)


def _model(name: str) -> onnx.ModelProto:
    """The case's model; output shapes as ONNX shape inference gives them, as written where it gives none
    (GroupNormalization is a function op without an inference)."""
    text, weights, consts, opset = CASES[name]
    model = M.build(text, weights, opset=opset, consts=consts, open_outputs=True)
    if all(vi.type.tensor_type.HasField("shape") for vi in model.graph.output):
        return model
    return M.build(text, weights, opset=opset, consts=consts)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_onnxruntime(name):
    M.check(_model(name), feeds=M.feeds_for(_model(name), seed=5))


def _import_model_py(folder):
    spec = importlib.util.spec_from_file_location(f"_spatial_{folder.name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(n for n in CASES if "2d" not in n and "nearest_up" not in n))
def test_model_py_matches_onnxruntime(name, tmp_path):
    import onnxruntime as ort
    model = _model(name)
    loaded = load_onnx(model.SerializeToString())
    (tmp_path / "model.py").write_text(render_model(loaded.graph))
    np.savez(tmp_path / "weights.npz", **loaded.graph.weights)
    feeds = M.feeds_for(model, seed=9)
    got = _import_model_py(tmp_path).run({loaded.input_names[k]: v for k, v in feeds.items()})
    refs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for vi, ref in zip(model.graph.output, refs):
        out = got[loaded.output_names[vi.name]]
        assert out.dtype == ref.dtype and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=0, atol=M.TOL * max(1.0, float(np.abs(ref).max())))
