"""Gradients of the torch lowering of the spatial, normalization and activation ops against finite
differences (torch.autograd.gradcheck in float64, its fast mode: random projections of the Jacobian),
inputs and weights alike."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.ir import parse
from spatial.torch_cases import SPATIAL_CASES

torch = pytest.importorskip("torch")
from mpc.backends import torch_backend as tb

NOT_DIFFERENTIABLE = {"maxpool_indices"}   # an integer output


def _graph(case: str):
    rng = np.random.default_rng(3)
    return parse(SPATIAL_CASES[case].replace("{t}", "f64"), lambda name, ty: rng.uniform(-1, 1, ty.shape))


@pytest.mark.parametrize("case", sorted(set(SPATIAL_CASES) - NOT_DIFFERENTIABLE))
def test_gradients_match_finite_differences(case):
    graph = _graph(case)
    module = tb.lower(graph)
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    params = [p.detach().clone().requires_grad_() for n, p in module.named_parameters() if p.requires_grad]
    rng = np.random.default_rng(5)
    inputs = [torch.from_numpy(rng.uniform(-1, 1, v.type.shape)).requires_grad_() for v in graph.inputs]

    def f(*args):
        feeds = {v.name: a for v, a in zip(graph.inputs, args[:len(inputs)])}
        out = torch.func.functional_call(module, dict(zip(names, args[len(inputs):])), (feeds,))
        # not the integer or one-hot outputs, nor statistics stashed in float32
        return tuple(t for t in out.values() if t.requires_grad and t.dtype == torch.float64)

    assert torch.autograd.gradcheck(f, inputs + params, eps=1e-6, atol=1e-5, fast_mode=True)
