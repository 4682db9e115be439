"""Shared helpers for the example training scripts.

Seeding/determinism, the fixed digits data split, deterministic ONNX export
with fixed input/output names, npz saving and onnxruntime evaluation.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

EXAMPLES_DIR = Path(__file__).resolve().parent
MODELS_DIR = EXAMPLES_DIR / "models"
DATA_DIR = EXAMPLES_DIR / "data"

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def seed_everything(seed: int = 0) -> None:
    """Seed all RNGs and force deterministic single-threaded torch kernels."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def digits_split(seed: int = 0):
    """load_digits scaled to [0, 1] float32, stratified 70/30 split.

    Returns (x_train, x_test, y_train, y_test); x is (N, 64) float32,
    y is int64 class ids. Shared by every digits example.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    x = (ds.data / 16.0).astype(np.float32)
    y = ds.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)


def save_npz(path, x: np.ndarray, labels: np.ndarray) -> None:
    """Write {INPUT_NAME: x (float32), 'labels': int64} deterministically (no compression)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.savez writes fixed zip timestamps, so output is byte-identical per content.
    np.savez(
        path,
        **{
            INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32),
            "labels": np.ascontiguousarray(labels, dtype=np.int64),
        },
    )


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path, *, fold_constants: bool = True) -> None:
    """Export with the legacy TorchScript exporter: input 'input', output 'logits', batch dim 'N'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=fold_constants,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def onnx_accuracy(path, x: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the exported model, measured with onnxruntime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]
    return float((logits.argmax(axis=1) == labels).mean())


def rel(path) -> str:
    """Path relative to the current directory when possible (for log lines)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
