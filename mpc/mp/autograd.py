"""Torch autograd for margin-propagation dot products (the exact derivatives of the threshold α), on the fused numba kernels.

`MPDotFunction` computes y[n, h] = y_MP(w_h, x_n) with `mpc.mp.mp_dot_fwd` and its exact gradient
(∂α/∂p_i = 1/K on the active set, ∂α/∂γ = −1/K) with `mpc.mp.mp_dot_bwd`. The forward keeps only α, β and
the active counts (N × H each) for the backward, so training memory per layer is O(B·H) beyond inputs and
weights, instead of the B × 2D × H tensors of a sort-based implementation. Work runs on the CPU in the
input dtype; results return to the input's device.
"""

import math

import torch
from torch import nn

from mpc.mp import mp_dot_bwd, mp_dot_fwd


def _numpy(t):
    """A C-contiguous CPU numpy view (or copy) of a tensor, detached."""
    return t.detach().to("cpu").contiguous().numpy()


class MPDotFunction(torch.autograd.Function):
    """y = MPDotFunction.apply(x, w, gamma): x (N, D), w (H, D), gamma a 0-d tensor; y (N, H)."""

    @staticmethod
    def forward(ctx, x, w, gamma):
        """Fused MP forward; saves α, β and the active counts for the backward. gamma: 0-d tensor or float."""
        if x.dtype != w.dtype:
            raise TypeError(f"MPDotFunction: x and w must share a dtype, got {x.dtype} and {w.dtype}")
        g = float(gamma.detach()) if torch.is_tensor(gamma) else float(gamma)
        y, alpha, beta, k_alpha, k_beta = mp_dot_fwd(_numpy(x), _numpy(w), g)
        saved = [torch.from_numpy(a) for a in (alpha, beta, k_alpha, k_beta)]
        ctx.save_for_backward(x, w, *saved)
        ctx.gamma = g
        ctx.gamma_meta = (gamma.dtype, gamma.device) if torch.is_tensor(gamma) else None
        return torch.from_numpy(y).to(x.device)

    @staticmethod
    def backward(ctx, grad_y):
        """Exact gradients for x, w and gamma (only those that are needed are returned)."""
        x, w, alpha, beta, k_alpha, k_beta = ctx.saved_tensors
        gx, gw, gg = mp_dot_bwd(_numpy(grad_y.to(x.dtype)), _numpy(x), _numpy(w), ctx.gamma,
                                alpha.numpy(), beta.numpy(), k_alpha.numpy(), k_beta.numpy())
        need_x, need_w, need_g = ctx.needs_input_grad
        grad_x = torch.from_numpy(gx).to(x.device) if need_x else None
        grad_w = torch.from_numpy(gw).to(w.device) if need_w else None
        grad_g = None
        if need_g and ctx.gamma_meta is not None:
            dtype, device = ctx.gamma_meta
            grad_g = torch.tensor(float(gg), dtype=dtype, device=device)
        return grad_x, grad_w, grad_g


def mp_dot_torch(x, w, gamma):
    """Differentiable y_MP for torch tensors; gamma may be a float or a 0-d tensor."""
    if not torch.is_tensor(gamma):
        gamma = torch.tensor(float(gamma), dtype=x.dtype)
    return MPDotFunction.apply(x, w, gamma)


class MPLinear(nn.Module):
    """A linear layer whose dot products are y_MP: y = gain ⊙ MP(x, W; γ) + bias, with learnable log γ."""

    def __init__(self, in_features, out_features, gamma=1.0, learn_gamma=True, gain=False, bias=True,
                 dtype=torch.float32):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        weight = torch.empty(out_features, in_features, dtype=dtype).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)
        # log γ keeps γ > 0 under gradient steps
        self.log_gamma = nn.Parameter(torch.tensor(math.log(gamma), dtype=dtype), requires_grad=learn_gamma)
        self.gain = nn.Parameter(torch.ones(out_features, dtype=dtype)) if gain else None
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None

    @property
    def gamma(self):
        """γ = exp(log γ)."""
        return self.log_gamma.exp()

    def forward(self, x):
        """y_MP over the last dimension of x (any leading shape)."""
        lead = x.shape[:-1]
        y = MPDotFunction.apply(x.reshape(-1, x.shape[-1]), self.weight, self.gamma)
        if self.gain is not None:
            y = y * self.gain
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, -1)

    def extra_repr(self):
        """Sizes and γ for print(module)."""
        out_features, in_features = self.weight.shape
        gamma = float(self.gamma.detach())
        return f"in_features={in_features}, out_features={out_features}, gamma={gamma:.4g}"
