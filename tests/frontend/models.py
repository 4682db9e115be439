"""Small test models for the frontend tests, and the onnxruntime comparison they all go through.

ONNX models are written in ONNX's text syntax (`onnx.parser.parse_model`); the graph inputs named
in `weights=` become initializers filled from a seeded RNG. Torch modules are built by factory
functions (torch is imported inside them, so importing this module never loads torch).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from onnx import numpy_helper

from mpc.frontend import Loaded, load_onnx
from mpc.ir import parse, print_graph, run

OPSET = 17
TOL = 2e-5


def build(body: str, weights: tuple[str, ...] = (), opset: int = OPSET, seed: int = 0,
          consts: dict[str, np.ndarray] | None = None, open_outputs: bool = False) -> onnx.ModelProto:
    """Parse `body` (graph text without the model header); inputs listed in `weights` become
    seeded random initializers (names ending in 'var' positive, like BatchNorm variances), and
    inputs named in `consts` initializers holding the given arrays. With `open_outputs` the output
    shapes written in the text are replaced by what ONNX shape inference says."""
    model = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\n{body}')
    rng = np.random.default_rng(seed)
    consts = dict(consts or {})
    keep = []
    for vi in model.graph.input:
        if vi.name in consts:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(consts[vi.name]), vi.name))
        elif vi.name in weights:
            model.graph.initializer.append(numpy_helper.from_array(_random(rng, vi), vi.name))
        else:
            keep.append(vi)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    if open_outputs:
        for vi in model.graph.output:
            vi.type.tensor_type.ClearField("shape")
        model = onnx.shape_inference.infer_shapes(model)
    return model


def _random(rng, vi: onnx.ValueInfoProto) -> np.ndarray:
    shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
    if vi.name.endswith("var"):
        return rng.uniform(0.5, 1.5, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def feeds_for(model: onnx.ModelProto, batch: int = 3, seed: int = 1) -> dict[str, np.ndarray]:
    """Seeded random data for every graph input (symbolic dims bound to `batch`)."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in vi.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        out[vi.name] = rng.standard_normal(shape).astype(dtype)
    return out


def roundtrip(loaded: Loaded) -> None:
    """print -> parse -> print is the identity on the imported graph."""
    g = loaded.graph
    text = print_graph(g)
    assert print_graph(parse(text, g.weights)) == text


def check(model: onnx.ModelProto, batch: int = 3, feeds: dict[str, np.ndarray] | None = None) -> Loaded:
    """Import `model`, then require the interpreter to match onnxruntime: max abs error within
    TOL * max(1, |output|), top-1 agreement 1.0 on rank >= 2 outputs, and a text round trip."""
    import onnxruntime as ort
    loaded = load_onnx(model.SerializeToString())
    roundtrip(loaded)
    feeds = feeds if feeds is not None else feeds_for(model, batch)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    refs = sess.run(None, feeds)
    got = run(loaded.graph, {loaded.input_names[k]: v for k, v in feeds.items()})
    for vi, ref in zip(model.graph.output, refs):
        out = got[loaded.output_names[vi.name]]
        assert out.shape == ref.shape, (vi.name, out.shape, ref.shape)
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        err = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max(initial=0.0))
        assert err <= TOL * scale, f"output {vi.name}: max abs error {err} > {TOL * scale}"
        if ref.ndim >= 2 and ref.size:
            top1 = (out.reshape(ref.shape[0], -1).argmax(1) == ref.reshape(ref.shape[0], -1).argmax(1)).mean()
            assert top1 == 1.0, f"output {vi.name}: top-1 agreement {top1}"
    return loaded


# -- ONNX models --------------------------------------------------------------------------
def _dims(shape) -> str:
    return ", ".join(map(str, shape))



def cnn() -> onnx.ModelProto:
    """Conv + BatchNormalization + Relu + MaxPool + Flatten + Gemm, dynamic batch."""
    return build("""
    cnn (float[N, 3, 8, 8] x, float[4, 3, 3, 3] "conv.weight", float[4] "conv.bias",
         float[4] "bn.scale", float[4] "bn.bias", float[4] "bn.mean", float[4] "bn.var",
         float[10, 64] "fc.weight", float[10] "fc.bias")
        => (float[N, 10] logits) {
        c = Conv <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (x, "conv.weight", "conv.bias")
        b = BatchNormalization <epsilon = 0.001> (c, "bn.scale", "bn.bias", "bn.mean", "bn.var")
        r = Relu (b)
        p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
        f = Flatten (p)
        logits = Gemm <transB = 1> (f, "fc.weight", "fc.bias")
    }""", weights=("conv.weight", "conv.bias", "bn.scale", "bn.bias", "bn.mean", "bn.var", "fc.weight",
                   "fc.bias"))


def matmul_add() -> onnx.ModelProto:
    """The hand-built MatMul + Add graph."""
    return build("""
    mlp (float[N, 16] x, float[16, 8] "fc0.weight", float[8] "fc0.bias") => (float[N, 8] y) {
        t = MatMul (x, "fc0.weight")
        y = Add (t, "fc0.bias")
    }""", weights=("fc0.weight", "fc0.bias"))


def shapes_mix() -> onnx.ModelProto:
    """Transpose, Reshape (constant shape), Concat, Softmax, AveragePool, Sigmoid in one graph."""
    return build("""
    mix (float[N, 2, 6, 6] x, float[N, 8] z, int64[2] shape) => (float[N, 26] y) {
        a = AveragePool <kernel_shape = [2, 2], strides = [2, 2]> (x)
        s = Sigmoid (a)
        t = Transpose <perm = [0, 1, 3, 2]> (s)
        r = Reshape (t, shape)
        c = Concat <axis = 1> (r, z)
        y = Softmax <axis = 1> (c)
    }""", consts={"shape": np.array([0, -1], np.int64)})


def shape_chain() -> onnx.ModelProto:
    """A torch-style Shape -> Gather -> Unsqueeze -> Concat chain computing a Reshape target."""
    return build("""
    chain (float[N, 4, 3, 3] x) => (float[N, 36] y) {
        sh = Shape (x)
        zero = Constant <value = int64 {0}> ()
        n = Gather <axis = 0> (sh, zero)
        axes = Constant <value_ints = [0]> ()
        n1 = Unsqueeze (n, axes)
        minus = Constant <value_ints = [-1]> ()
        target = Concat <axis = 0> (n1, minus)
        y = Reshape (x, target)
    }""")


def unary(op: str, attrs: str = "", extra_inputs: str = "") -> onnx.ModelProto:
    """One elementwise op on a [N, 5, 4] input."""
    attrs = f"<{attrs}>" if attrs else ""
    return build(f"""
    unary (float[N, 5, 4] x) => (float[N, 5, 4] y) {{
        y = {op} {attrs} (x{extra_inputs})
    }}""")


def gemm(trans_a: int, trans_b: int, alpha: float, beta: float, c_shape: tuple[int, ...] | None):
    """Gemm with every attribute spelled out; A is a graph input, B and C weights."""
    a_shape, b_shape = _dims((6, 4) if trans_a else (4, 6)), _dims((5, 6) if trans_b else (6, 5))
    c_in = f", float[{_dims(c_shape)}] c" if c_shape is not None else ""
    c_arg = ", c" if c_shape is not None else ""
    return build(f"""
    gemm (float[{a_shape}] a, float[{b_shape}] b{c_in}) => (float[4, 5] y) {{
        y = Gemm <alpha = {alpha}, beta = {beta}, transA = {trans_a}, transB = {trans_b}> (a, b{c_arg})
    }}""", weights=("b", "c"))


def conv(attrs: str, x_shape=(2, 4, 9, 9), w_shape=(6, 4, 3, 3), bias: bool = True) -> onnx.ModelProto:
    """One Conv with the given attributes (output shape left to shape inference)."""
    b_in, b_arg = (f", float[{w_shape[0]}] b", ", b") if bias else ("", "")
    return build(f"""
    conv (float[{_dims(x_shape)}] x, float[{_dims(w_shape)}] w{b_in}) => (float y) {{
        y = Conv <{attrs}> (x, w{b_arg})
    }}""", weights=("w", "b"), open_outputs=True)


def pool(op: str, attrs: str, x_shape=(2, 3, 7, 7)) -> onnx.ModelProto:
    """One MaxPool / AveragePool with the given attributes."""
    return build(f"""
    pool (float[{_dims(x_shape)}] x) => (float y) {{
        y = {op} <{attrs}> (x)
    }}""", open_outputs=True)


# -- torch modules (factories for `pkg.module:factory` specs) ---------------------------
def torch_mlp():
    """A small MLP with BatchNorm1d and a softmax head, seeded."""
    import torch
    from torch import nn
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(-1))
    _perturb_bn(m)
    return m


def torch_cnn():
    """Conv + BatchNorm2d + ReLU + MaxPool + view + Linear, seeded."""
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 4 * 4, 10)

        def forward(self, x):
            x = self.pool(torch.relu(self.bn(self.conv(x))))
            return self.fc(x.view(x.size(0), -1))

    torch.manual_seed(0)
    m = CNN()
    _perturb_bn(m)
    return m


def torch_gap_cnn():
    """Strided and grouped convs, relu6 (Clip), leaky ReLU, adaptive average pool (ReduceMean in the
    dynamo export, GlobalAveragePool in the legacy one), dropout, flatten, linear."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class GapCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.conv1 = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.drop = nn.Dropout(0.3)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = F.leaky_relu(self.bn(self.conv1(F.relu6(self.conv0(x)))), 0.2)
            return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))

    torch.manual_seed(0)
    m = GapCNN()
    _perturb_bn(m)
    return m


def _perturb_bn(module) -> None:
    """Give BatchNorm layers non-trivial running statistics."""
    import torch
    gen = torch.Generator().manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            n = layer.num_features
            layer.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            layer.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            layer.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            layer.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
