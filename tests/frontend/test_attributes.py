"""Every attribute of every supported ONNX op is handled: consumed, or rejected with its value."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from mpc.errors import BadModel, UnsupportedOp
from mpc.frontend import load_onnx
from mpc.frontend.onnx import import_model
from mpc.frontend.onnx_ops import HANDLERS, supported_ops

from . import models as M


def _spec_attributes(op_type: str) -> dict[int, set[str]]:
    """The op's attributes at every opset the frontend accepts (13 up to the installed onnx)."""
    out = {}
    for version in range(13, onnx.defs.onnx_opset_version() + 1):
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
    assert "unsupported attribute foo=3 on op 'Relu'" in str(e.value)


REJECTED = [
    ("storage_order", 'y = MaxPool <kernel_shape = [2, 2], storage_order = 1> (x)', {}),
    ("training_mode", 'y = BatchNormalization <training_mode = 1> (x, s, b, s, s)',
     {"s": [1.0] * 3, "b": [0.0] * 3}),
    ("pads", 'y = Conv <auto_pad = "SAME_UPPER", pads = [1, 1, 1, 1]> (x, w)', {"w": np.ones((2, 3, 3, 3))}),
    ("auto_pad", 'y = Conv <auto_pad = "SAME_LOWER", dilations = [2, 2]> (x, w)',
     {"w": np.ones((2, 3, 3, 3))}),
    ("dilations", 'y = AveragePool <kernel_shape = [2, 2], dilations = [2, 2]> (x)', {}),
    ("value_string", 'y = Constant <value_string = "hello"> ()', {}),
    ("to", 'y = Cast <to = 7> (x)', {}),
    ("allowzero", 'y = Reshape <allowzero = 1> (x, shape)', {"shape": np.array([0, 3, 6, 6], np.int64)}),
    ("kernel_shape", 'y = Conv <kernel_shape = [1, 1]> (x, w)', {"w": np.ones((2, 3, 3, 3))}),
]


@pytest.mark.parametrize("attribute,node,consts", REJECTED, ids=[r[0] for r in REJECTED])
def test_unsupported_attribute_values(attribute, node, consts):
    model = _one_node(node, consts)
    with pytest.raises(UnsupportedOp) as e:
        import_model(model, "t.onnx")
    assert e.value.attribute == attribute and f"attribute {attribute}=" in str(e.value)
    assert e.value.node_name == model.graph.node[0].name or e.value.node_name.endswith("_0")


UNSUPPORTED_INPUTS = [
    ("Indices", 'y, i = MaxPool <kernel_shape = [2, 2]> (x)', {}),
    ("mask output", 'y, m = Dropout (x)', {}, "m"),
    ("training_mode", 'y = Dropout (x, r, t)', {"r": np.float32(0.5), "t": np.array(True)}),
    ("min", 'y = Clip (x, x)', {}),
    ("Gather", 'y = Gather (x, i)', {"i": np.array([0], np.int64)}),
    ("axes", 'y = Unsqueeze (x, x)', {}),
    ("only 2-D", 'y = Conv (x, w)', {"w": np.ones((2, 3, 3))}),
]


@pytest.mark.parametrize("case", UNSUPPORTED_INPUTS, ids=[c[0] for c in UNSUPPORTED_INPUTS])
def test_unsupported_uses(case):
    words, node, consts = case[:3]
    outputs = case[3:]
    model = _one_node(node, consts, extra_outputs=outputs)
    with pytest.raises(UnsupportedOp, match=words):
        import_model(model, "t.onnx")


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
