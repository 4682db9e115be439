"""Train a small Conv+BatchNorm CNN on scikit-learn's 8x8 digits and export it to ONNX.

Architecture:
  Conv2d(1,8,3,p=1)+BatchNorm2d+ReLU+MaxPool2d(2)
  -> Conv2d(8,16,3,p=1)+BatchNorm2d+ReLU+MaxPool2d(2)
  -> Flatten -> Linear(64,32)+ReLU -> Linear(32,10)

The model is exported in eval mode with constant folding disabled, so the
ONNX graph keeps explicit BatchNormalization nodes (useful for testing
Conv+BN fusion passes).

Outputs (deterministic, byte-identical across runs):
  examples/models/digits_cnn.onnx        input "input" (N, 1, 8, 8) -> "logits" (N, 10)
  examples/data/digits_img_train.npz     {"input": (N, 1, 8, 8) float32, "labels": int64}
  examples/data/digits_img_test.npz      same format, held-out 30% split
The split is identical to the one used by train_digits_mlp.py.

Run from the repo root:  python examples/train_digits_cnn.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnx
import torch
from _common import (
    DATA_DIR,
    MODELS_DIR,
    digits_split,
    export_onnx,
    onnx_accuracy,
    rel,
    save_npz,
    seed_everything,
)
from torch import nn

EPOCHS = 40
BATCH = 64
LR = 1e-2
WEIGHT_DECAY = 1e-4


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def main() -> None:
    seed_everything(0)
    x_train, x_test, y_train, y_test = digits_split()
    x_train = x_train.reshape(-1, 1, 8, 8)
    x_test = x_test.reshape(-1, 1, 8, 8)

    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(0)

    t0 = time.time()
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            if len(idx) < 2:  # BatchNorm needs >1 sample per batch
                continue
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    print(f"trained {EPOCHS} epochs (batch {BATCH}) in {time.time() - t0:.1f}s, last loss {loss.item():.4f}")

    onnx_path = MODELS_DIR / "digits_cnn.onnx"
    model.eval()
    export_onnx(model, torch.from_numpy(x_test[:1]), onnx_path, fold_constants=False)
    ops = [n.op_type for n in onnx.load(str(onnx_path)).graph.node]
    n_bn = ops.count("BatchNormalization")
    if n_bn != 2:
        raise RuntimeError(f"expected 2 BatchNormalization nodes in the exported graph, got {n_bn}: {ops}")

    save_npz(DATA_DIR / "digits_img_train.npz", x_train, y_train)
    save_npz(DATA_DIR / "digits_img_test.npz", x_test, y_test)

    acc = onnx_accuracy(onnx_path, np.asarray(x_test), y_test)
    print(
        f"wrote {rel(onnx_path)}, {rel(DATA_DIR / 'digits_img_train.npz')}, {rel(DATA_DIR / 'digits_img_test.npz')}"
    )
    print(f"onnxruntime test accuracy: {acc:.4f} ({len(y_test)} samples)")


if __name__ == "__main__":
    main()
