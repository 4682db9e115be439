"""mp-calibrate: per-layer γ, balance scale c, gains and offsets of MP ops on calibration data
(without it the MP approximation's scale and offset are far from the float layer's).

Layers are calibrated in graph order. Two copies of the activations flow forward, both captured by
`mpc.calib.capture` in float64 on the whole calibration set: the float model's (every MP op computed
as its exact dense product) and the MP model's (calibrated layers as MP: a hook fits each MP op when
the run reaches it and substitutes the calibrated op's output). Each layer's input is the MP
activation, its target the float pre-bias output, so the fit also absorbs the error of the layers
before it. Per layer:
1. c ∈ powers of two, starting where |x·c| and |W/c| balance; γ on the grid γD/2 = 2^k (so the
   output constant stays a shift), starting from the bound γ* = K/(√D (ln(1+2D/e))^¼)
   that minimizes the error bound of V. Kotak's thesis "Efficient Training and Memory Optimization
   Strategies for Margin Propagation Based Networks" (IISc), §3.1 "Error Analysis", eq. 3.11; both walk downhill on the relative error left after
   a per-channel affine fit, measured on a seeded subset of rows.
2. Per output channel (option channel_scale=off|on|auto, default off): the weight row is multiplied by the
   power of two in 2^-3..2^3 that minimizes its error after its own affine fit (the weights become a new
   `@W.mpscale` entry; the gain absorbs the scale). One c balances |x·c| against |W/c| for the whole
   layer, but rows differ in norm (BatchNorm folding rescales each channel; a depthwise conv's channels
   each read their own input channel), so a per-channel balance is what the MP approximation needs.
   On ResNet-8 and a MobileNet-style net trained on MNIST (BatchNorm folded) this cut the calibrated
   accuracy loss from 5.6 and 4.0 points to 1.5 and 2.1; on the small digits MLP and CNN it cost 0.4
   and 1.1 points, which is why `on` is not the default. `auto` decides from data the choice never saw:
   every 4th calibration sample is held out; the scales are chosen on the others, a layer keeps them only
   if they lower its squared error on the held-out samples (affine fit on the others), and the network
   keeps them only if its logits on the held-out samples flip fewer top-1 classes of the float network's
   (or as many, with a lower KL to its softmax) than the network calibrated without them.
3. On all rows: least-squares gain and offset per output channel; gain·γD/2 snapped to at most
   K signed power-of-two terms (option gain_terms; gain=float skips it); offset refit after snapping.
4. Optionally (option refine), the fitted layers are revisited in graph order to lower a
   block-wise or end-to-end objective with the MP activations fed forward (passes/_mp_refine.py).
5. Offsets fold into the bias addition that follows (biases stay additions).

Options (`mp-calibrate{gamma=8.0,gain_terms=3,gain=float,refine=e2e,channel_scale=auto}`; the mp
target's --gamma, --gain-terms, --gain, --refine and --channel-scale set them): `gamma` fixes γ for every
layer, `gain_terms` is K, `gain` is shift-add or float, `refine` is none, blocks or e2e, `channel_scale` sets the
per-channel weight scales of step 2 off, on or auto (true/false: on/off).
Calibration data comes from the driver (ctx.dataset); without it, 256 seeded U(0, 1) samples.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

import mpc.passes._mp_refine as R
import numpy as np

from mpc import kernels_np as K
from mpc.calib import capture
from mpc.data import pearson, random_data
from mpc.errors import BadFlag, BadInput
from mpc.ir import Op, apply, make_op, replace_all_uses, with_attrs
from mpc.ir.ops_mp import snap_shift_add
from mpc.passmanager import register_pass

MP_KINDS = ("mp.dot", "mp.conv2d")
SEARCH_ROWS = 512      # rows (samples or conv patches) used to search γ and c
SCALE_ROWS = 4096      # rows used to choose the per-channel weight scales
HOLD_EVERY = 4         # channel_scale=auto: every 4th calibration sample is held out from choosing the scales
AUTO_SAMPLES = 512     # channel_scale=auto: held-out samples the logit objective is measured on
SCALE_SPAN = 3         # per-channel weight scales range over 2^-SCALE_SPAN .. 2^SCALE_SPAN
FIT_ROWS = 16384       # rows used to fit gains and offsets


@dataclass
class LayerFit:
    """The calibrated parameters of one MP layer and how well it matches its float target."""

    gamma: float
    c: float
    gain: np.ndarray
    offset: np.ndarray
    terms: int
    rel_err: float
    pearson: float
    scale: np.ndarray | None = None   # per-output-channel power-of-two weight scale (None: all ones)


class GainMode(enum.Enum):
    """How gains are stored: sums of signed powers of two (shift-add) or plain floats."""

    SHIFT_ADD = "shift-add"
    FLOAT = "float"


class ChannelScale(enum.Enum):
    """Per-channel weight scales (step 2): never, always, or per layer when they lower held-out error."""

    OFF = "off"
    ON = "on"
    AUTO = "auto"

    @classmethod
    def _missing_(cls, value):
        return {"true": cls.ON, "false": cls.OFF, True: cls.ON, False: cls.OFF}.get(value)   # the old bool spelling


class Refine(enum.Enum):
    """What the refinement after the per-layer fits minimizes: nothing, block outputs, or the logits."""

    NONE = "none"
    BLOCKS = "blocks"
    E2E = "e2e"


@dataclass(frozen=True)
class MPCalibrateOptions:
    """Options of mp-calibrate: a fixed γ (None: searched per layer), K terms per gain, gain form, refinement."""

    gamma: float | None = None
    gain_terms: int = 2
    gain: GainMode = GainMode.SHIFT_ADD
    refine: Refine = Refine.NONE
    channel_scale: ChannelScale = ChannelScale.OFF   # per-output-channel power-of-two weight scales (step 2)

    def __post_init__(self):
        if self.gamma is not None and not (math.isfinite(self.gamma) and self.gamma > 0):
            raise BadFlag(f"mp-calibrate: option gamma must be a finite number > 0, got {self.gamma!r}")
        if not 1 <= self.gain_terms <= 32:
            raise BadFlag(f"mp-calibrate: option gain_terms must be an integer from 1 to 32, got {self.gain_terms}")

    @property
    def terms_cap(self) -> int:
        """The gain_terms attribute the MP ops get: K, or 0 for float gains."""
        return self.gain_terms if self.gain is GainMode.SHIFT_ADD else 0


# -- rows: a layer as (X rows, W rows, target rows) per group ------------------------------
def layer_rows(op: Op, x: np.ndarray, w: np.ndarray):
    """[(X (R, D), W (H, D), channel slice)] per group, and a function back to the op's layout."""
    if op.kind == "mp.dot":
        shape = x.shape[:-1]
        return [(x.reshape(-1, x.shape[-1]), w, slice(0, w.shape[0]))], lambda y: y.reshape(shape + (w.shape[0],))
    a = op.attrs
    m = w.shape[0]
    cols, (oh, ow) = K.im2col(x, w.shape[2:], a.strides, a.pads, a.dilations, a.group)
    mg = m // a.group
    groups = [(cols[g], w[g * mg:(g + 1) * mg].reshape(mg, -1), slice(g * mg, (g + 1) * mg)) for g in range(a.group)]
    n = x.shape[0]
    return groups, lambda y: np.ascontiguousarray(y.reshape(n, oh, ow, m).transpose(0, 3, 1, 2))


def as_rows(op: Op, t: np.ndarray) -> np.ndarray:
    """An op-layout output (N, .., H) or (N, M, OH, OW) as rows (R, H)."""
    if op.kind == "mp.dot":
        return t.reshape(-1, t.shape[-1])
    return t.transpose(0, 2, 3, 1).reshape(-1, t.shape[1])


def dense(op: Op, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The exact float product the MP op stands for (no gain, offset or bias)."""
    return _dense(op.kind, op.attrs, x, w)


def _dense(kind: str, a, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    if kind == "mp.dot":
        return x @ w.T
    return K.conv2d(x, w, None, a.strides, a.pads, a.dilations, a.group)


def _dense_kernel(kind: str):
    """A kernel running an MP op of `kind` as its dense product (gain and offset unused)."""
    def kernel(k, x, w, *gain_offset):
        return _dense(kind, k.attrs, x, w)
    return kernel


DENSE_KERNELS = {kind: _dense_kernel(kind) for kind in MP_KINDS}


# -- the search ------------------------------------------------------------------------------
def mp_rows(groups, gamma: float, c: float) -> np.ndarray:
    """y_MP of every row for every output channel: (R, H)."""
    from mpc.mp import mp_dot
    outs = [mp_dot(np.ascontiguousarray(xg * c), np.ascontiguousarray(wg / c), gamma) for xg, wg, _ in groups]
    return np.concatenate(outs, axis=1)


def affine_fit(y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column least-squares gain and offset of t ≈ g·y + o (float64); g = 0 for constant y."""
    y, t = y.astype(np.float64), t.astype(np.float64)
    ym, tm = y.mean(0), t.mean(0)
    var = ((y - ym) ** 2).mean(0)
    cov = ((y - ym) * (t - tm)).mean(0)
    g = np.where(var > 1e-30, cov / np.where(var > 1e-30, var, 1.0), 0.0)
    return g, tm - g * ym


def rel_err(y: np.ndarray, t: np.ndarray, g: np.ndarray, o: np.ndarray) -> float:
    """RMS of (g·y + o − t) relative to the RMS of t."""
    r = y.astype(np.float64) * g + o - t
    den = float(np.sqrt((t.astype(np.float64) ** 2).mean())) or 1.0
    return float(np.sqrt((r * r).mean())) / den


def gamma_bound(x: np.ndarray, w: np.ndarray, c: float) -> float:
    """Kotak §3.1, eq. 3.11: the γ minimizing K⁴/(γ²D) + γ²D ln(1 + 2D/e), K bounding ‖x·c‖, ‖w/c‖."""
    d = x.shape[1]
    k = max(float(np.linalg.norm(x * c, axis=1).max(initial=0)), float(np.linalg.norm(w / c, axis=1).max(initial=0)))
    return max(k, 1e-12) / (math.sqrt(d) * math.log(1 + 2 * d / math.e) ** 0.25)


def _grid_k(gamma: float, d: int) -> int:
    return round(math.log2(gamma * d / 2))


def _descend(score, start: int, lo: int = -60, hi: int = 60) -> tuple[int, float]:
    """Walk an integer grid downhill from `start` (score is memoized by the caller)."""
    best_k, best = start, score(start)
    for step in (1, -1):
        k = best_k + step
        while lo <= k <= hi:
            s = score(k)
            if s >= best:
                break
            best_k, best = k, s
            k += step
        if best_k != start:
            break
    return best_k, best


def search(groups, target: np.ndarray, fixed_gamma: float | None, rng) -> tuple[float, float, float]:
    """(γ, c, error) minimizing the affine-fit error on a subset of rows."""
    r = groups[0][0].shape[0]
    idx = np.sort(rng.choice(r, SEARCH_ROWS, replace=False)) if r > SEARCH_ROWS else slice(None)
    sub = [(xg[idx].astype(np.float64), wg.astype(np.float64), sl) for xg, wg, sl in groups]
    t = target[idx]
    d = sub[0][0].shape[1]
    cache: dict[tuple[int, int], float] = {}

    def err(kc: int, kg: int) -> float:
        if (kc, kg) not in cache:
            gamma = fixed_gamma or 2.0 ** (kg + 1) / d
            y = mp_rows(sub, gamma, 2.0 ** kc)
            cache[kc, kg] = rel_err(y, t, *affine_fit(y, t))
        return cache[kc, kg]

    def best_gamma(kc: int) -> tuple[int, float]:
        if fixed_gamma:
            return 0, err(kc, 0)
        start = _grid_k(gamma_bound(sub[0][0], sub[0][1], 2.0 ** kc), d)
        return _descend(lambda kg: err(kc, kg), start)

    x_rms = float(np.sqrt(np.mean([np.mean(s[0] ** 2) for s in sub]))) or 1.0
    w_rms = float(np.sqrt(np.mean([np.mean(s[1] ** 2) for s in sub]))) or 1.0
    kc0 = round(0.5 * math.log2(w_rms / x_rms))
    gammas: dict[int, int] = {}

    def score_c(kc: int) -> float:
        gammas[kc], e = best_gamma(kc)
        return e

    kc, e = _descend(score_c, kc0, -30, 30)
    gamma = fixed_gamma or 2.0 ** (gammas[kc] + 1) / d
    return gamma, 2.0 ** kc, e


def snap_gains(g: np.ndarray, scale: float, terms: int) -> tuple[np.ndarray, int]:
    """Gains whose g·scale has at most `terms` signed power-of-two terms, and the most used."""
    out, most = np.empty_like(g), 0
    for h, v in enumerate(g):
        s, used = snap_shift_add(float(v) * scale, terms)
        out[h], most = s / scale, max(most, used)
    return out, most


def _subsample(r: int, rows: np.ndarray | None, rng):
    """Up to SCALE_ROWS of `rows` (None: all r rows), seeded and sorted; a slice when all are used."""
    if rows is None:
        return np.sort(rng.choice(r, SCALE_ROWS, replace=False)) if r > SCALE_ROWS else slice(None)
    return rows[np.sort(rng.choice(rows.size, SCALE_ROWS, replace=False))] if rows.size > SCALE_ROWS else rows


def channel_scales(groups, t_rows: np.ndarray, gamma: float, c: float, rng,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """Per output channel, the power of two s (2^-SCALE_SPAN..2^SCALE_SPAN) multiplying that channel's
    weights that minimizes the channel's squared error after its affine fit (γ and c fixed).

    Channels are independent under MP (each output reads only its own weight row), so one pass over the
    candidates chooses every channel at once. `rows` restricts the choice to those rows (default: all). Why: after BatchNorm folding, and in depthwise convs where
    each channel sees its own input channel, one balance c cannot suit every channel."""
    idx = _subsample(t_rows.shape[0], rows, rng)
    t = t_rows[idx].astype(np.float64)
    best_err = best_s = None
    for k in range(-SCALE_SPAN, SCALE_SPAN + 1):
        y = mp_rows([(xg[idx].astype(np.float64), wg.astype(np.float64) * 2.0 ** k, sl) for xg, wg, sl in groups],
                    gamma, c)
        g, o = affine_fit(y, t)
        err = ((y * g + o - t) ** 2).sum(0)
        if best_err is None:
            best_err, best_s = err, np.full(err.shape, 2.0 ** k)
            continue
        better = err < best_err * (1 - 1e-9)   # ties keep the smaller scale: deterministic
        best_err, best_s = np.where(better, err, best_err), np.where(better, 2.0 ** k, best_s)
    return best_s


def scaled_weight(op: Op, w: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """The weights with each output channel (axis 0) multiplied by its scale."""
    if scale is None:
        return w
    return w * scale.reshape((-1,) + (1,) * (w.ndim - 1)).astype(w.dtype)


def fit_layer(op: Op, x_mp: np.ndarray, x_float: np.ndarray, w: np.ndarray, options: MPCalibrateOptions,
              rng) -> tuple[LayerFit, np.ndarray]:
    """Calibrate one MP op; returns the fit and the float target (op layout)."""
    target = dense(op, x_float.astype(np.float64), w.astype(np.float64))
    groups, _ = layer_rows(op, x_mp, w)
    t_rows = as_rows(op, target)
    gamma, c, _ = search(groups, t_rows, options.gamma, rng)
    if options.channel_scale is ChannelScale.OFF:
        return fit_affine(groups, t_rows, gamma, c, options, rng), target
    if options.channel_scale is ChannelScale.ON:
        scale = channel_scales(groups, t_rows, gamma, c, rng)
    else:
        scale = guarded_scales(groups, t_rows, x_mp.shape[0], gamma, c, rng)
    groups, _ = layer_rows(op, x_mp, scaled_weight(op, w, scale))
    fit = fit_affine(groups, t_rows, gamma, c, options, rng)
    fit.scale = None if np.all(scale == 1) else scale
    return fit, target


def held_out_split(r: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(choose rows, held-out rows) of r rows from n samples (rows are sample-major): every
    HOLD_EVERY-th sample is held out, so a conv's patches of one image stay on one side."""
    held = (np.arange(r) // max(r // max(n, 1), 1)) % HOLD_EVERY == HOLD_EVERY - 1
    return np.flatnonzero(~held), np.flatnonzero(held)


def held_out_sse(groups, t_rows: np.ndarray, scale: np.ndarray, fit_rows, held_rows, gamma: float,
                 c: float) -> float:
    """Squared error on the held-out rows of the MP layer with weight rows scaled by `scale`, each channel's
    affine fit made on the fit rows only."""
    def y_of(rows):
        return mp_rows([(xg[rows].astype(np.float64), wg.astype(np.float64) * scale[sl, None], sl)
                        for xg, wg, sl in groups], gamma, c)
    g, o = affine_fit(y_of(fit_rows), t_rows[fit_rows])
    return float(((y_of(held_rows) * g + o - t_rows[held_rows].astype(np.float64)) ** 2).sum())


def guarded_scales(groups, t_rows: np.ndarray, n: int, gamma: float, c: float, rng) -> np.ndarray:
    """channel_scale=auto: scales chosen on the rows not held out, kept (for the whole layer) only when
    they lower the layer's held-out squared error after the affine fit; all ones otherwise.

    One yes/no per layer, judged on samples the choice never saw, so the guard cannot overfit the way the
    per-channel choice can (on the small digits nets it lowered the fitted error yet cost test accuracy)."""
    choose, held = held_out_split(t_rows.shape[0], n)
    if held.size == 0:
        return np.ones(t_rows.shape[1])
    scale = channel_scales(groups, t_rows, gamma, c, rng, choose)
    if np.all(scale == 1):
        return scale
    fit_rows, held_rows = _subsample(0, choose, rng), _subsample(0, held, rng)
    ones = np.ones_like(scale)
    keep = (held_out_sse(groups, t_rows, scale, fit_rows, held_rows, gamma, c)
            < held_out_sse(groups, t_rows, ones, fit_rows, held_rows, gamma, c))
    return scale if keep else ones


def fit_affine(groups, t_rows: np.ndarray, gamma: float, c: float, options: MPCalibrateOptions, rng) -> LayerFit:
    """Gains and offsets (snapped as the options say) for a given γ and c, on up to FIT_ROWS rows."""
    r = t_rows.shape[0]
    idx = np.sort(rng.choice(r, FIT_ROWS, replace=False)) if r > FIT_ROWS else slice(None)
    y = mp_rows([(xg[idx].astype(np.float64), wg.astype(np.float64), sl) for xg, wg, sl in groups], gamma, c)
    t = t_rows[idx]
    g, o = affine_fit(y, t)
    d = groups[0][0].shape[1]
    terms = 0
    if options.gain is GainMode.SHIFT_ADD:
        g, terms = snap_gains(g, gamma * d / 2, options.gain_terms)
        o = (t - y * g).mean(0)
    return LayerFit(gamma, c, g, o, terms, rel_err(y, t, g, o), pearson(y * g + o, t) or 0.0)


def layer_out(op: Op, x: np.ndarray, w: np.ndarray, fit: LayerFit) -> np.ndarray:
    """The calibrated MP op's output (op layout, float64) with the parameters of `fit`."""
    groups, back = layer_rows(op, x, scaled_weight(op, w, fit.scale))
    return back(mp_rows(groups, fit.gamma, fit.c) * fit.gain + fit.offset)


# -- the pass --------------------------------------------------------------------------------
def _calibration_data(graph, ctx):
    """The driver's dataset, or (run without one) seeded U(0, 1) samples, noted in the report."""
    if ctx.dataset is not None:
        return ctx.dataset
    data = random_data(graph, 256, ctx.seed)
    ctx.report.note(f"mp-calibrate: no calibration data given: calibrated on {data.source} of U(0, 1)")
    return data


def _apply(graph, op: Op, fit: LayerFit, terms_cap: int) -> Op:
    """Replace op's attributes and gain/offset weights with the fitted ones (new weight names)."""
    dtype = graph.weights[op.operands[1].name].dtype
    base = op.operands[2].name.removesuffix(".mp_gain")
    gain = graph.add_weight(f"{base}.mp_gain.cal", fit.gain.astype(dtype))
    offset = graph.add_weight(f"{base}.mp_offset.cal", fit.offset.astype(dtype))
    attrs = with_attrs(op.attrs, gamma=float(fit.gamma), c=float(fit.c), gain_terms=terms_cap)
    w = op.operands[1]
    if fit.scale is not None:
        w = graph.add_weight(f"{w.name}.mpscale", scaled_weight(op, graph.weights[w.name], fit.scale))
    new = make_op(graph, op.kind, [op.operands[0], w, gain, offset], attrs, op.loc)
    return new


def _fold_offset(graph, op: Op) -> bool:
    """Fold op's offset into the single nn.add(op, @bias) that follows; True if it did."""
    users = [o for o in graph.ops if any(v is op.result for v in o.operands)]
    if len(users) != 1 or users[0].kind != "nn.add" or any(v is op.result for v in graph.outputs):
        return False
    add = users[0]
    bias = add.operands[1] if add.operands[0] is op.result else add.operands[0]
    if not bias.is_weight:
        return False
    b = graph.weights[bias.name]
    off = graph.weights[op.operands[3].name]
    shape = b.shape
    folded = (b.astype(np.float64) + (off.reshape(-1, 1, 1) if op.kind == "mp.conv2d" else off))
    if folded.shape != shape:
        return False
    new_bias = graph.add_weight(f"{bias.name}.mpfold", folded.astype(b.dtype))
    add.operands = [new_bias if v is bias else v for v in add.operands]
    op.operands = op.operands[:3]
    return True


def _report_row(op: Op, w: np.ndarray, fit: LayerFit) -> dict:
    d = int(np.prod(w.shape[1:]))
    return {"layer": op.loc.node or str(op.loc), "D": d, "H": int(w.shape[0]), "gamma": fit.gamma,
            "gammaD/2": fit.gamma * d / 2, "c": fit.c, "gain terms": fit.terms,
            "rel err": round(fit.rel_err, 6), "pearson": round(fit.pearson, 6)}


def _calibrate_layers(graph, data, x_float: dict, options, rng, terms_cap: int, show: dict,
                      fits: dict | None = None) -> list[tuple]:
    """Run the MP network, fitting each MP op on its whole MP input when reached; (op, new op, row) per layer.

    MP ops run as their dense product (cheap), then the hook replaces that output with the calibrated
    op's, so later layers see the MP activations. One batch: each fit needs every sample."""
    done = []

    def fit_hook(op: Op, inputs: list, outputs: tuple):
        if op.kind not in MP_KINDS:
            return None
        fit, _ = fit_layer(op, inputs[0], x_float[op.operands[0].name], inputs[1], options, rng)
        new = _apply(graph, op, fit, terms_cap)
        done.append((op, new, _report_row(op, inputs[1], fit)))
        if fits is not None:
            fits[id(op)] = fit
        return apply(new, inputs[:1] + [graph.weights[v.name].astype(np.float64) for v in new.operands[1:]])

    capture(graph, data, batch_size=None, hook=fit_hook, kernels=DENSE_KERNELS, dtype=np.float64,
            desc="mp-calibrate", **show)
    return done


def _uncalibrated(graph, op: Op) -> bool:
    """An MP op as mp-rewrite leaves it: unit gains, zero offsets, c = 1 (calibration sets all three)."""
    if len(op.operands) != 4 or op.attrs.c != 1.0:
        return False
    gain, offset = (graph.weights[v.name] for v in op.operands[2:])
    return bool(np.all(gain == 1) and np.all(offset == 0))


def _to_calibrate(graph) -> list[Op]:
    """The MP ops to calibrate: all of them fresh from mp-rewrite, or none (already calibrated: the pass
    leaves them alone, so running it twice changes nothing); a mix is refused."""
    mp_ops = [op for op in graph.ops if op.kind in MP_KINDS]
    fresh = [op for op in mp_ops if _uncalibrated(graph, op)]
    if fresh and len(fresh) < len(mp_ops):
        done = next(op for op in mp_ops if op not in fresh)
        raise BadInput(f"mp-calibrate: op '{done.kind}' at {done.loc} is already calibrated but "
                       f"{len(fresh)} other MP op(s) are not: calibrate a graph whose MP ops all come from mp-rewrite")
    return fresh


def _refine(graph, data, layers: list[tuple], fits: dict, options: MPCalibrateOptions, ctx) -> list[tuple]:
    """Refine the fitted layers (passes/_mp_refine.py); layers whose fit moved get their op rebuilt."""
    rng = np.random.default_rng(ctx.seed + 1)
    n = data.size
    idx = np.sort(rng.choice(n, R.REFINE_SAMPLES, replace=False)) if n > R.REFINE_SAMPLES else np.arange(n)
    weights = {k: (a.astype(np.float64) if a.dtype.kind == "f" else a) for k, a in graph.weights.items()}
    inputs = {id(v): data.feeds[v.name][idx].astype(np.float64) for v in graph.inputs}
    mp_ops = [op for op, _, _ in layers]
    dense_layer = lambda op, args: (dense(op, args[0], args[1]),)   # the float network
    ref = R.run_from(graph, inputs, 0, dense_layer, weights)
    state = {"mode": options.refine.value, "ref": ref, "ends": R.block_ends(graph, mp_ops), "weights": weights,
             "fits": dict(fits)}

    def layer(over: dict):
        return lambda op, args: (layer_out(op, args[0], args[1], over.get(id(op), state["fits"][id(op)])),)

    def grid(op, fit):
        d = int(np.prod(weights[op.operands[1].name].shape[1:]))
        return _grid_k(fit.gamma, d), round(math.log2(fit.c))

    def refit(op, x_mp, kg, kc):
        w = weights[op.operands[1].name]
        d = int(np.prod(w.shape[1:]))
        scale = state["fits"][id(op)].scale   # the per-channel weight scales stay as calibrated
        groups, _ = layer_rows(op, x_mp, scaled_weight(op, w, scale))
        t_rows = as_rows(op, dense(op, ref[id(op.operands[0])], w))
        fit = fit_affine(groups, t_rows, options.gamma or 2.0 ** (kg + 1) / d, 2.0 ** kc, options, rng)
        fit.scale = scale
        return fit

    state |= {"layer": layer, "grid": grid}
    state["env"] = R.run_from(graph, inputs, 0, layer({}), weights)
    state["score"] = before = R.objective(state["mode"], state["env"], ref, state["ends"])
    kept = [R.refine_layer(graph, graph.ops.index(op), op, state, refit, options.gamma is not None) for op in mp_ops]
    ctx.report.section("MP refinement", [{"refine": state["mode"], "samples": int(idx.size),
                                          "objective before": before, "objective after": state["score"],
                                          "moves kept": sum(kept)}])
    return [_rebuilt(graph, op, new, row, state["fits"][id(op)], fits[id(op)], options.terms_cap)
            for op, new, row in layers]


def _held_out_kl(graph, data, layers: list[tuple], fits: dict, ref: dict | None) -> tuple[float, dict]:
    """KL of the calibrated MP network's logits to the float network's on the held-out samples (every
    HOLD_EVERY-th, at most AUTO_SAMPLES), and the float activations there (computed once)."""
    idx = np.flatnonzero(np.arange(data.size) % HOLD_EVERY == HOLD_EVERY - 1)[:AUTO_SAMPLES]
    weights = {k: (a.astype(np.float64) if a.dtype.kind == "f" else a) for k, a in graph.weights.items()}
    inputs = {id(v): data.feeds[v.name][idx].astype(np.float64) for v in graph.inputs}
    if ref is None:
        ref = R.run_from(graph, inputs, 0, lambda op, args: (dense(op, args[0], args[1]),), weights)
    env = R.run_from(graph, inputs, 0, lambda op, args: (layer_out(op, args[0], args[1], fits[id(op)]),), weights)
    end = R.block_ends(graph, [op for op, _, _ in layers])[-1]
    got, want = env[id(end)], ref[id(end)]
    flips = int((got.argmax(-1) != want.argmax(-1)).sum()) if want.ndim == 2 and want.shape[1] > 1 else 0
    return (flips, R.kl_or_sq(got, want)), ref


def _auto_scales(graph, data, x_float: dict, options: MPCalibrateOptions, ctx, show: dict, fits: dict) -> list:
    """channel_scale=auto: calibrate without scales, then with scales chosen on the samples that are not
    held out (each layer's kept only if it lowers that layer's held-out error); keep the network whose
    logits are closer (KL) to the float network's on the held-out samples (ties: no scales).

    Why a network-level check too: on the small digits nets the scales lower every layer's error, held out
    or not, yet cost test accuracy; the logits are what the scales must not make worse."""
    variants, ref = [], None
    for mode in (ChannelScale.OFF, ChannelScale.AUTO):
        f: dict = {}
        layers = _calibrate_layers(graph, data, x_float, replace(options, channel_scale=mode),
                                   np.random.default_rng(ctx.seed), options.terms_cap, show, f)
        kl, ref = _held_out_kl(graph, data, layers, f, ref)
        variants.append((kl, layers, f))
    best = 1 if variants[1][0] < variants[0][0] else 0
    for op, new, _ in variants[1 - best][1]:   # the other variant's weights go
        for v in new.operands[1:]:
            if v.name != op.operands[1].name:
                graph.remove_weight(v.name)
    scaled = sum(fit.scale is not None for fit in variants[1][2].values())
    ctx.report.section("MP channel scales (auto)", [{
        "held-out samples": int(min(AUTO_SAMPLES, data.size // HOLD_EVERY)),
        "top-1 flips without": variants[0][0][0], "top-1 flips with": variants[1][0][0],
        "logit KL without": variants[0][0][1], "logit KL with": variants[1][0][1],
        "layers with scales": scaled, "kept": "with" if best else "without"}])
    fits.update(variants[best][2])
    return variants[best][1]


def _rebuilt(graph, op: Op, new: Op, row: dict, fit: LayerFit, old: LayerFit, terms_cap: int) -> tuple:
    """(op, calibrated op, report row) with `fit` applied: the first op (and its weights) replaced."""
    if fit is old:
        return op, new, row
    for v in new.operands[2:]:
        graph.remove_weight(v.name)
    w = graph.weights[op.operands[1].name]
    return op, _apply(graph, op, fit, terms_cap), _report_row(op, w, fit)


@register_pass("mp-calibrate", summary="choose γ, balance c, shift-add gains and offsets per MP layer on data",
               options=MPCalibrateOptions, needs_data=True)
def mp_calibrate(graph, ctx, options: MPCalibrateOptions) -> dict:
    """Calibrate every MP op in order (see the module docstring)."""
    mp_ops = _to_calibrate(graph)
    if not mp_ops:
        skipped = sum(op.kind in MP_KINDS for op in graph.ops)
        return {"layers": 0, "already_calibrated": skipped}
    data = _calibration_data(graph, ctx)
    ctx.report.section("Calibration data", data.source)
    rng = np.random.default_rng(ctx.seed)
    rows, folded = [], 0
    show = {"quiet": ctx.quiet, "progress": ctx.progress}
    terms_cap = options.terms_cap
    # the float network: every MP op as its exact dense product; each MP op's input there is its target's
    x_float = capture(graph, data, [op.operands[0] for op in mp_ops], batch_size=None, kernels=DENSE_KERNELS,
                      dtype=np.float64, desc="mp-calibrate (float)", **show)
    fits: dict = {}
    if options.channel_scale is ChannelScale.AUTO:
        layers = _auto_scales(graph, data, x_float, options, ctx, show, fits)
    else:
        layers = _calibrate_layers(graph, data, x_float, options, rng, terms_cap, show, fits)
    if options.refine is not Refine.NONE:
        layers = _refine(graph, data, layers, fits, options, ctx)
    for op, new, _ in layers:
        graph.ops[graph.ops.index(op)] = new
    for op, new, row in layers:   # after every new op is in place: a new op may use an old op's result
        replace_all_uses(graph, op.result, new.result)
        rows.append(row)
    for op in graph.ops:
        if op.kind in MP_KINDS and len(op.operands) == 4:
            folded += _fold_offset(graph, op)
    ctx.report.section("MP calibration", rows)
    pearsons = [r["pearson"] for r in rows]
    return {"layers": len(rows), "offsets_folded": folded, "calib_samples": data.size,
            "min_pearson": min(pearsons) if pearsons else None}
