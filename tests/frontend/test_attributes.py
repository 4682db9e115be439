"""Every attribute of every supported ONNX op is handled: consumed, or rejected with its value."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from mpc.errors import BadModel, Location, UnsupportedOp
from mpc.frontend import load_onnx
from mpc.frontend.onnx import import_model
from mpc.frontend.onnx_ops import HANDLERS, supported_ops

from . import models as M


def _spec_attributes(op_type: str) -> dict[int, set[str]]:
    """The op's attributes at every opset the frontend accepts (13 up to the installed onnx) where the op exists
    (BitwiseAnd, CastLike, ... came after opset 13)."""
    out = {}
    for version in range(13, onnx.defs.onnx_opset_version() + 1):
        if onnx.defs.has(op_type, version):
            out[version] = set(onnx.defs.get_schema(op_type, version).attributes)
    return out


@pytest.mark.parametrize("op_type", supported_ops())
def test_handler_declares_every_schema_attribute(op_type):
    declared = HANDLERS[op_type].attrs
    latest = set(onnx.defs.get_schema(op_type).attributes)
    assert latest <= declared, f"{op_type}: unhandled {sorted(latest - declared)}"
    for version, names in _spec_attributes(op_type).items():
        assert names <= declared, f"{op_type} (opset {version}): unhandled {sorted(names - declared)}"
    everywhere = set().union(*_spec_attributes(op_type).values())
    assert declared <= everywhere, f"{op_type}: not in the spec {sorted(declared - everywhere)}"


def test_the_ops_the_brief_names_are_supported():
    ops = {"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax",
           "Clip", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Flatten",
           "Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant",
           "Cast"}
    assert ops <= set(supported_ops())


def test_attribute_outside_the_declared_set_is_rejected():
    """The checker refuses unknown attributes, so this goes straight to the importer."""
    model = M.unary("Relu")
    model.graph.node[0].attribute.append(onnx.helper.make_attribute("foo", 3))
    with pytest.raises(UnsupportedOp) as e:
        import_model(model, "relu.onnx")
    assert (e.value.attribute, e.value.value) == ("foo", 3)
    assert str(e.value) == "unsupported attribute foo=3 on op 'Relu' at node 'Relu_0': unknown attribute"


REJECTED = [  # attribute, node, constants, the whole message (unnamed nodes are named <op type>_<index>)
    ("storage_order", 'y = MaxPool <kernel_shape = [2, 2], storage_order = 2> (x)', {},
     ("unsupported attribute storage_order=2 on op 'MaxPool' at node 'MaxPool_0': expected 0 (row major) or 1 "
      "(column major)")),
    ("training_mode", 'y = BatchNormalization <training_mode = 1> (x, s, b, s, s)',
     {"s": [1.0] * 3, "b": [0.0] * 3},
     ("unsupported attribute training_mode=1 on op 'BatchNormalization' at node 'BatchNormalization_0': only "
      "inference (training_mode=0) is supported")),
    ("pads", 'y = Conv <auto_pad = "SAME_UPPER", pads = [1, 1, 1, 1]> (x, w)', {"w": np.ones((2, 3, 3, 3))},
     ("unsupported attribute pads=[1, 1, 1, 1] on op 'Conv' at node 'Conv_0': pads cannot be combined with "
      "auto_pad=SAME_UPPER")),
    ("auto_pad", 'y = Conv <auto_pad = "SAME_LOWER", dilations = [2, 2]> (x, w)',
     {"w": np.ones((2, 3, 3, 3))},
     ("unsupported attribute auto_pad='SAME_LOWER' on op 'Conv' at node 'Conv_0': auto_pad=SAME_LOWER with "
      "dilations > 1 is not supported (onnxruntime refuses it too)")),
    ("approximate", 'y = Gelu <approximate = "fast"> (x)', {},
     "unsupported attribute approximate='fast' on op 'Gelu' at node 'Gelu_0': expected none or tanh"),
    ("value_string", 'y = Constant <value_string = "hello"> ()', {},
     ("unsupported attribute value_string='hello' on op 'Constant' at node 'Constant_0': only numeric dense "
      "constants are supported")),
    ("to", 'y = Cast <to = 8> (x)', {},
     ("unsupported attribute to=8 on op 'Cast' at node 'Cast_0': casts to element type string are not supported")),
    ("allowzero", 'y = Reshape <allowzero = 1> (x, shape)', {"shape": np.array([0, 3, 6, 6], np.int64)},
     ("unsupported attribute allowzero=1 on op 'Reshape' at node 'Reshape_0': allowzero=1 with a 0 in the "
      "shape (an empty tensor) is not supported")),
    ("kernel_shape", 'y = Conv <kernel_shape = [1, 1]> (x, w)', {"w": np.ones((2, 3, 3, 3))},
     ("unsupported attribute kernel_shape=[1, 1] on op 'Conv' at node 'Conv_0': kernel_shape does not match "
      "the weight f32[2,3,3,3]")),
]


@pytest.mark.parametrize("attribute,node,consts,message", REJECTED, ids=[r[0] for r in REJECTED])
def test_unsupported_attribute_values(attribute, node, consts, message):
    model = _one_node(node, consts)
    with pytest.raises(UnsupportedOp) as e:
        import_model(model, "t.onnx")
    assert str(e.value) == message
    assert e.value.attribute == attribute and e.value.loc == Location(node=f"{model.graph.node[0].op_type}_0")


UNSUPPORTED_INPUTS = [  # id, node, constants, the whole message[, extra graph outputs]
    ("scales", 'y = Resize (x, x, x)', {},
     "unsupported op 'Resize' at node 'Resize_0': scales (input 'x') or sizes must be a non-empty constant"),
    ("mask output", 'y, m = Dropout (x)', {},
     ("unsupported op 'Dropout' at node 'Dropout_0': the mask output 'm' is used; only inference dropout is "
      "supported"), "m"),
    ("training_mode", 'y = Dropout (x, r, t)', {"r": np.float32(0.5), "t": np.array(True)},
     "unsupported op 'Dropout' at node 'Dropout_0': training_mode=true is not supported (inference only)"),
    ("min", 'y = Clip (x, x)', {},
     ("unsupported op 'Clip' at node 'Clip_0': min (input 'x') must be a constant, but it is a graph input, "
      "known only at run time: mpc fixes it at import (attributes and shapes are static in the IR)")),
    ("Range", 'y = Range (x, x, x)', {},
     "unsupported op 'Range' at node 'Range_0': Range is only supported on inputs known at import"),
    ("axes", 'y = Unsqueeze (x, x)', {},
     ("unsupported op 'Unsqueeze' at node 'Unsqueeze_0': axes (input 'x') must be a constant, but it is a graph "
      "input, known only at run time: mpc fixes it at import (attributes and shapes are static in the IR)")),
    ("weight rank", 'y = Conv (x, w)', {"w": np.ones((2, 3, 3))},
     "unsupported op 'Conv' at node 'Conv_0': weight f32[2,3,3] does not match a 2-D input f32[2,3,6,6]"),
]


@pytest.mark.parametrize("case", UNSUPPORTED_INPUTS, ids=[c[0] for c in UNSUPPORTED_INPUTS])
def test_unsupported_uses(case):
    _, node, consts, message = case[:4]
    model = _one_node(node, consts, extra_outputs=case[4:])
    with pytest.raises(UnsupportedOp) as e:
        import_model(model, "t.onnx")
    assert str(e.value) == message


def _one_node(node: str, consts: dict, extra_outputs=()) -> onnx.ModelProto:
    """A one-node model on x: float[2, 3, 6, 6]; `consts` become initializers (no checker run)."""
    consts = {k: np.asarray(v, np.float32 if np.asarray(v).dtype == np.float64 else None)
              for k, v in consts.items()}
    ins = "".join(f", {_text_type(v)}[{','.join(map(str, v.shape))}] {k}" for k, v in consts.items())
    outs = "".join(f", float {o}" for o in extra_outputs)
    model = M.build(f"""
    t (float[2, 3, 6, 6] x{ins}) => (float y{outs}) {{
        {node}
    }}""", consts=consts)
    return model


def _text_type(v: np.ndarray) -> str:
    """'float', 'int64', 'bool': the element type as ONNX's text syntax spells it."""
    return onnx.helper.tensor_dtype_to_string(onnx.helper.np_dtype_to_tensor_dtype(v.dtype))[12:].lower()


def test_checker_level_problems_are_bad_models():
    model = _one_node('y = Relu (x, x)', {})
    with pytest.raises(BadModel):
        load_onnx(model.SerializeToString())
