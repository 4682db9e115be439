"""`snn.chain`: a whole spiking MLP (constant-current input, K LIF layers, membrane readout) as one op.

    snn.chain(x, θ_0, W_1, b_1, θ_1, ..., W_{K−1}, b_{K−1}, θ_{K−1}, W_K, b_K)   x [N, D] -> [N, H_K]
        x is the constant input current of layer 0 (the same at each of `timesteps` steps); layer j ≥ 1
        is driven by its input layer's spikes through W_j [H_{j−1}, H_j] and b_j [H_j]; the last synapse
        W_K, b_K is read out as a membrane: r_T / T with r_t = readout_beta·r_{t−1} + current_t.
        Per LIF layer (tuples of K entries): beta, soft (soft reset, else reset to zero), refractory, v0
        (the snn.lif rule). `sparse` (K entries, one per synapse) marks the synapses whose kernel walks
        only the non-zero weights of the active rows; it changes the speed, not the values.

It is the graph snn.encode{constant} -> snn.lif -> (nn.matmul -> nn.add -> snn.lif)* -> nn.matmul ->
nn.add -> snn.decode{membrane}, which the NumPy backend's lowering pass `snn-chain` turns into this op so
that model.py steps through time once for the whole network (mpc/snn/chain.py); nothing else makes it.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpc.ir.opdefs import InferError, define
from mpc.ir.types import FLOATS


@dataclass(frozen=True)
class ChainAttrs:
    timesteps: int
    dt: float = 1.0
    beta: tuple[float, ...] = ()
    soft: tuple[bool, ...] = ()
    refractory: tuple[int, ...] = ()
    v0: tuple[float, ...] = ()
    sparse: tuple[bool, ...] = ()
    readout_beta: float = 1.0


def _check_vector(t, what: str, dtype, h: int) -> None:
    if t.dtype != dtype or t.shape not in ((), (1,), (h,)):
        raise InferError(f"{what} must be {dtype}, a scalar or [{h}], got {t}")


def _check_attrs(a, layers: int) -> None:
    if a.timesteps < 1 or not a.dt > 0:
        raise InferError(f"wants timesteps >= 1 and dt > 0, got {a.timesteps}, {a.dt}")
    lengths = [len(getattr(a, f)) for f in ("beta", "soft", "refractory", "v0", "sparse")]
    if lengths != [layers] * 5:
        raise InferError(f"beta, soft, refractory, v0, sparse need {layers} entries each (one per layer), "
                         f"got {lengths}")
    if any(not 0 <= v <= 1 for v in a.beta + (a.readout_beta,)) or any(v < 0 for v in a.refractory):
        raise InferError(f"wants beta in [0, 1] and refractory >= 0, got {list(a.beta)}, {list(a.refractory)}")


def _infer(types, a):
    x, params = types[0], types[1:]
    if x.dtype not in FLOATS or x.rank != 2:
        raise InferError(f"snn.chain wants a float current [N, D], got {x}")
    if len(params) % 3:
        raise InferError(f"snn.chain wants 3·K parameters (θ_0, then W, b, θ per layer, then W, b), "
                         f"got {len(params)}")
    layers = len(params) // 3
    _check_attrs(a, layers)
    width = x.shape[1]
    _check_vector(params[0], "θ_0", x.dtype, width)
    for j in range(1, layers + 1):
        w = params[3 * j - 2]
        if w.dtype != x.dtype or w.rank != 2 or w.shape[0] != width:
            raise InferError(f"W_{j} must be {x.dtype}[{width}, H], got {w}")
        width = w.shape[1]
        _check_vector(params[3 * j - 1], f"b_{j}", x.dtype, width)
        if j < layers:
            _check_vector(params[3 * j], f"θ_{j}", x.dtype, width)
    return [x.with_shape((x.shape[0], width))]


def _kernel(k, x, *params):
    from mpc.snn.chain import snn_chain
    a = k.attrs
    return snn_chain(x, params, a.timesteps, a.beta, a.soft, a.refractory, a.v0, a.sparse, a.readout_beta)


define("snn.chain", ("x", "params*"),
       "a whole spiking MLP (constant current in, LIF layers, membrane readout) in one time loop: the "
       "numpy lowering snn-chain", _infer, _kernel, ChainAttrs, traits=("stateful",))

__all__ = ["ChainAttrs"]
