"""`mpc finetune --target mp --ddp N`: fine-tuning with torch DistributedDataParallel on N local processes.

The parent converts and calibrates as usual, then starts N ranks (spawned, one thread each) joined by a
gloo process group over a free local TCP port. Each rank receives the calibrated graph as IR text plus
its weights and the training arrays (plain data, never a pickled closure), lowers it to torch and runs the
ordinary fine-tuning loop (`mpc.train.finetune`) with the model wrapped in DDP: every rank draws the same
seeded sample order and takes every N-th sample of each global batch, and DDP averages the gradients, so
the steps are those of one process on the whole batch up to rounding. Rank 0 alone hands the trained
graph back (IR text and weights in a private temporary folder); the parent then writes the output folder
as always (a temporary folder renamed into place), so no two processes ever write it.
"""
from __future__ import annotations

import json
import socket
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

from mpc.data import Dataset, npz_bytes, read_npz
from mpc.errors import BadFlag, BadInput
from mpc.ir import Graph, parse, print_graph

MAX_RANKS = 64


def add_ddp_flag(p) -> None:
    """--ddp N on `mpc finetune`."""
    p.add_argument("--ddp", type=int, default=None, metavar="N",
                   help="mp target: train with DistributedDataParallel on N local processes (gloo)")


def check_ddp(args) -> int | None:
    """The rank count --ddp asks for (None without the flag); BadFlag where it does not apply."""
    if args.ddp is None:
        return None
    if not 1 <= args.ddp <= MAX_RANKS:
        raise BadFlag(f"--ddp: expected 1 to {MAX_RANKS} processes, got {args.ddp}")
    if args.target != "mp" or getattr(args, "optimizer", "adamw") != "adamw":
        raise BadFlag("--ddp applies to --target mp with the default AdamW optimizer only")
    return args.ddp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finetune_ddp(graph: Graph, data: Dataset, world: int, options: dict):
    """Train `graph` with DDP on `world` ranks; (the trained graph, rank 0's FinetuneResult).

    `options` are the keyword arguments of `mpc.train.finetune.finetune` after `data`."""
    import torch.multiprocessing as mp

    from mpc.train.finetune import FinetuneResult
    used = sorted(graph.used_weights())
    with tempfile.TemporaryDirectory(prefix="mpc-ddp-") as tmp:
        payload = {"ir": print_graph(graph), "weights": npz_bytes({w: graph.weights[w] for w in used}),
                   "feeds": data.feeds, "labels": data.labels, "source": data.source, "options": options,
                   "init": f"tcp://127.0.0.1:{_free_port()}", "world": world, "out": tmp}
        try:
            mp.start_processes(_rank_main, args=(payload,), nprocs=world, start_method="spawn")
        except mp.ProcessRaisedException as e:
            raise BadInput(f"--ddp: a rank failed: {str(e).strip().splitlines()[-1]}") from None
        trained = parse((Path(tmp) / "model.mpc").read_text(), read_npz(Path(tmp) / "weights.npz"))
        meta = json.loads((Path(tmp) / "result.json").read_text())
    val = meta.pop("val_indices")
    return trained, FinetuneResult(**meta, val_indices=None if val is None else np.asarray(val, np.int64))


def _rank_main(rank: int, payload: dict) -> None:
    """One rank: join the process group, fine-tune the graph from its text, rank 0 writes it back."""
    import torch
    import torch.distributed as dist

    from mpc.train.finetune import finetune
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=payload["init"], rank=rank, world_size=payload["world"])
    try:
        with np.load(BytesIO(payload["weights"]), allow_pickle=False) as z:
            graph = parse(payload["ir"], {k: z[k] for k in z.files})
        data = Dataset(payload["feeds"], payload["labels"], payload["source"])
        res = finetune(graph, data, **payload["options"])
        if rank == 0:
            _hand_back(graph, res, Path(payload["out"]))
    finally:
        dist.destroy_process_group()


def _hand_back(graph: Graph, res, out: Path) -> None:
    """Rank 0's trained graph and result, into the parent's private temporary folder."""
    (out / "model.mpc").write_text(print_graph(graph))
    (out / "weights.npz").write_bytes(npz_bytes({w: graph.weights[w] for w in sorted(graph.used_weights())}))
    meta = {"epochs": res.epochs, "seconds": res.seconds, "final_loss": res.final_loss,
            "train_accuracy": res.train_accuracy, "history": res.history, "selected_epoch": res.selected_epoch,
            "val_accuracy": res.val_accuracy,
            "val_indices": None if res.val_indices is None else [int(i) for i in res.val_indices]}
    (out / "result.json").write_text(json.dumps(meta))
