"""`mpc finetune MODEL --target ltc --method fptt|bptt --data SEQ.npz`: convert a recurrent model to LTC spiking
neurons (lower-ltc) and fine-tune it on sequences with FPTT or BPTT (mpc.train.fptt).

SEQ.npz holds the sequences [N, T, F] under the model's input name (or `x`) and int `labels` [N]. The
model must take one time-major input [T, N, F] (ONNX RNN/GRU layout 0) and give per-step class scores
[T, N, C]; the loss is the cross-entropy at every step weighted (t + 1)/T. The graph runs one step at a
time through the torch lowering (backends/torch_rnn.GraphStepper), its LTC states carried between steps;
trained weights are written back as `<name>.ft`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mpc.data import read_npz
from mpc.errors import BadFlag, BadInput


def _sequences(path: str, name: str, features) -> tuple[np.ndarray, np.ndarray]:
    arrays = read_npz(path)
    key = name if name in arrays else "x"
    if key not in arrays or "labels" not in arrays:
        raise BadInput(f"{path}: expected sequences [N, T, F] under '{name}' (or 'x') and int 'labels' [N] "
                       f"(file has {', '.join(sorted(arrays)) or 'nothing'})")
    x, y = arrays[key], arrays["labels"]
    if x.ndim != 3 or (isinstance(features, int) and x.shape[2] != features) or y.shape != (x.shape[0],):
        raise BadInput(f"{path}: input '{key}' must be [N, T, {features}] with labels [N], got "
                       f"{list(x.shape)} and {list(y.shape)}")
    return x.astype(np.float32), y.astype(np.int64)


def _train(stepper, params, x, y, args, seed: int) -> list[dict]:
    import torch

    from mpc.backends.torch_snn import surrogate
    from mpc.train.fptt import FPTT, bptt_sequence, fptt_sequence, weighted_ce
    opt = torch.optim.Adam(params, lr=args.lr)
    fptt = FPTT(params) if args.method == "fptt" else None
    rng, history = np.random.default_rng(seed), []
    with surrogate(args.surrogate, args.slope):
        for e in range(args.epochs):
            t0, correct = time.perf_counter(), 0
            for idx in np.array_split(rng.permutation(len(y)), max(1, -(-len(y) // args.batch_size))):
                xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
                outs = (fptt_sequence(stepper, fptt, opt, xb, yb, weighted_ce) if fptt is not None
                        else bptt_sequence(stepper, opt, xb, yb, weighted_ce))
                correct += int((outs[-1].argmax(1) == yb).sum())
            history.append({"epoch": e + 1, "train_accuracy": round(correct / len(y), 5),
                            "seconds": round(time.perf_counter() - t0, 3)})
    return history


def finetune_sequence(args, settings) -> int:
    """Convert for --target ltc, fine-tune with --method fptt|bptt, write the folder."""
    from mpc.backends.torch_backend import lower, write_back
    from mpc.backends.torch_rnn import GraphStepper
    from mpc.driver.compiler import compile_model, log, write_outdir
    from mpc.frontend import load
    from mpc.ir import verify_graph
    if settings.target != "ltc":
        raise BadFlag(f"--method {args.method} applies to --target ltc (recurrent models), got '{settings.target}'")
    loaded = load(args.model, settings.input_shape, exporter=settings.exporter, static_batch=settings.static_batch)
    compiled = compile_model(args.model, settings, loaded=loaded)
    graph = compiled.graph
    if len(graph.inputs) != 1 or graph.inputs[0].type.rank != 3:
        raise BadInput(f"{args.model}: --method {args.method} needs one time-major input [T, N, F], got "
                       f"{', '.join(str(v.type) for v in graph.inputs)}")
    source_name = next((k for k, v in loaded.input_names.items() if v == graph.inputs[0].name), graph.inputs[0].name)
    x, y = _sequences(args.data, source_name, graph.inputs[0].type.shape[2])
    import torch
    torch.manual_seed(settings.seed)
    module = lower(graph)
    stepper = GraphStepper(module, graph.inputs[0].name, graph.outputs[0].name)
    history = _train(stepper, [p for p in module.parameters() if p.requires_grad], x, y, args, settings.seed)
    write_back(graph, module)
    verify_graph(graph)
    compiled.ctx.report.section("Fine-tuning", {"method": args.method, "epochs": history})
    write_outdir(compiled, settings, Path(args.output), args.force)
    log(settings, f"mpc: fine-tuned {args.model} with {args.method} for {args.epochs} epochs (train accuracy "
                  f"{100 * history[-1]['train_accuracy']:.2f}%) -> {args.output}/")
    return 0
