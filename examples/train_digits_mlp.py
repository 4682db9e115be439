"""Train a 64-64-32-10 ReLU MLP on scikit-learn's 8x8 digits and export it to ONNX.

Outputs (deterministic, byte-identical across runs):
  examples/models/digits_mlp.onnx        input "input" (N, 64) -> "logits" (N, 10)
  examples/data/digits_train.npz         {"input": (N, 64) float32, "labels": int64}
  examples/data/digits_test.npz          same format, held-out 30% split

Run from the repo root:  python examples/train_digits_mlp.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

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

EPOCHS = 300  # full-batch Adam steps
LR = 1e-2
WEIGHT_DECAY = 1e-3


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def main() -> None:
    seed_everything(0)
    x_train, x_test, y_train, y_test = digits_split()

    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)

    t0 = time.time()
    model.train()
    for _ in range(EPOCHS):
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
    print(f"trained {EPOCHS} full-batch steps in {time.time() - t0:.1f}s, final loss {loss.item():.4f}")

    onnx_path = MODELS_DIR / "digits_mlp.onnx"
    export_onnx(model, torch.from_numpy(x_test[:1]), onnx_path)
    save_npz(DATA_DIR / "digits_train.npz", x_train, y_train)
    save_npz(DATA_DIR / "digits_test.npz", x_test, y_test)

    acc = onnx_accuracy(onnx_path, x_test, y_test)
    print(
        f"wrote {rel(onnx_path)}, {rel(DATA_DIR / 'digits_train.npz')}, {rel(DATA_DIR / 'digits_test.npz')}"
    )
    print(f"onnxruntime test accuracy: {acc:.4f} ({len(y_test)} samples)")


if __name__ == "__main__":
    main()
