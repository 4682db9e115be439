"""Benchmark: spiking targets on the shipped digits models — accuracy vs T for `--target lif` (mpc vs
SpikingJelly's ann2snn when installed), `--target nlif`, simulation throughput of mpc's model.py vs
SpikingJelly multi-step at T = 32, batch 256, and SynOps / energy vs the source's MACs.

    python benchmarks/bench_snn.py [--repeat 5] [--steps 4,8,16,32,64] [--only throughput]

Throughput compares model.py as emitted (the default lowering: the whole MLP fused by snn-chain) with the
same graph op by op (event-driven snn-event synapses, and dense BLAS synapses), SpikingJelly (as is, and
with the first Linear hoisted out of the time loop) and sinabs, side by side, round by round, printing
the load average and per-round ratios; `--only throughput` skips the accuracy and energy parts and
writes benchmarks/bench_snn_throughput.png instead.

SpikingJelly (and sinabs) are optional (`pip install 'mpc[bench]'`); rows for a missing package are
skipped. Writes benchmarks/bench_snn.png and prints markdown tables.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mpc.data import npz_bytes

ROOT = Path(__file__).resolve().parents[1]
MODELS, DATA = ROOT / "examples" / "models", ROOT / "examples" / "data"
SPECS = {"mlp": ("digits_mlp.onnx", "digits_train.npz", "digits_test.npz"),
         "cnn": ("digits_cnn.onnx", "digits_img_train.npz", "digits_img_test.npz")}


def _data(name):
    with np.load(DATA / name) as f:
        return f["input"], f["labels"]


def mpc_lif(model: str, steps: int, norm: str = "p99.9"):
    """The lif conversion of a shipped model (graph) and its spiking report on the test set."""
    from mpc.driver.compiler import Settings
    from mpc.driver.verify import verify
    onnx, train, test = SPECS[model]
    settings = Settings(target="lif", quiet=True, calib=str(DATA / train),
                        passes=f"canonicalize,lower-lif{{timesteps={steps},norm={norm}}},dce")
    return verify(str(MODELS / onnx), settings, str(DATA / test))


def mpc_nlif(model: str, dt: float):
    from mpc.driver.compiler import Settings
    from mpc.driver.verify import verify
    onnx, train, test = SPECS[model]
    settings = Settings(target="nlif", quiet=True, calib=str(DATA / train),
                        passes=f"canonicalize,lower-nlif{{dt={dt!r}}},dce")
    return verify(str(MODELS / onnx), settings, str(DATA / test))


def torch_source(model: str):
    """The float model as a plain torch Sequential (BatchNorm folded by mpc's float target), eval mode."""
    import torch
    from torch import nn

    from mpc.frontend import load
    from mpc.passmanager import run_pipeline
    g = load(str(MODELS / SPECS[model][0])).graph
    run_pipeline(g, "canonicalize")
    w = {k: torch.from_numpy(np.array(v)) for k, v in g.weights.items()}
    mods = []
    for op in g.ops:
        if op.kind == "nn.conv2d":
            c = nn.Conv2d(w[op.operands[1].name].shape[1], w[op.operands[1].name].shape[0], 3, padding=1)
            c.weight.data, c.bias.data = w[op.operands[1].name], w[op.operands[2].name]
            mods.append(c)
        elif op.kind == "nn.matmul":
            lin = nn.Linear(*w[op.operands[1].name].shape)
            lin.weight.data = w[op.operands[1].name].T.contiguous()
            mods.append(lin)
        elif op.kind == "nn.add":
            mods[-1].bias.data = w[op.operands[1].name]
        elif op.kind == "nn.relu":
            mods.append(nn.ReLU())
        elif op.kind == "nn.maxpool2d":
            mods.append(nn.MaxPool2d(2))
        elif op.kind == "nn.flatten":
            mods.append(nn.Flatten())
    return nn.Sequential(*mods).eval()


def spikingjelly_lif(model: str, steps_list, mode: str = "99.9%"):
    """SpikingJelly 2.0 ann2snn (RateCodingRecipe, constant-current input): accuracy per T."""
    import torch
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.ann2snn import Converter
    from spikingjelly.activation_based.ann2snn.recipes import RateCodingRecipe
    x_tr, _ = _data(SPECS[model][1])
    x_te, y_te = _data(SPECS[model][2])
    loader = [(torch.from_numpy(x_tr[i:i + 128]), None) for i in range(0, len(x_tr), 128)]
    snn = Converter(RateCodingRecipe(loader, mode=mode)).convert(torch_source(model))
    acc = {}
    xt = torch.from_numpy(x_te)
    with torch.no_grad():
        for steps in steps_list:
            functional.reset_net(snn)
            out = sum(snn(xt) for _ in range(steps))
            acc[steps] = float((out.argmax(1).numpy() == y_te).mean())
    return acc


def sinabs_lif(model: str, steps_list, spike_fn: str = "multi"):
    """sinabs 3.1 `from_model` (IAFSqueeze neurons, subtractive reset) after its `normalize_weights` at the
    99.9th percentile on training data, constant-current input: accuracy per T. spike_fn 'multi' is its
    default (several spikes per neuron and step allowed), 'single' binary spikes like mpc's."""
    import copy

    import sinabs.activation as sa
    import torch
    from sinabs import from_model
    from sinabs.utils import normalize_weights
    from torch import nn
    x_tr, _ = _data(SPECS[model][1])
    x_te, y_te = _data(SPECS[model][2])
    ann = copy.deepcopy(torch_source(model))
    relus = [n for n, m in ann.named_children() if isinstance(m, nn.ReLU)]
    params = [n for n, m in ann.named_children() if isinstance(m, (nn.Linear, nn.Conv2d))][:len(relus)]
    with torch.no_grad():
        normalize_weights(ann, torch.from_numpy(x_tr[:1024]), relus, params, percentile=99.9)
    fn = sa.MultiSpike if spike_fn == "multi" else sa.SingleSpike
    acc, xt = {}, torch.from_numpy(x_te)
    for steps in steps_list:
        snn = from_model(ann, spike_fn=fn, batch_size=len(x_te), num_timesteps=steps, min_v_mem=None)
        inp = xt.unsqueeze(1).expand(len(x_te), steps, *xt.shape[1:]).reshape(-1, *xt.shape[1:])
        with torch.no_grad():
            snn.reset_states()
            out = snn(inp).reshape(len(x_te), steps, -1).sum(1)
        acc[steps] = float((out.argmax(1).numpy() == y_te).mean())
    return acc


def mpc_runner(model_dir: Path, x: np.ndarray):
    """A call of model.py's run() on x (after a warm-up call)."""
    spec = importlib.util.spec_from_file_location("bench_model", model_dir / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.run({"input": x})
    return lambda: mod.run({"input": x})


def _layers(graph):
    """(W [in, out], b, θ or None) per synapse of a converted MLP, from its IR; the first synapse first."""
    w, layers = graph.weights, []
    for op in graph.ops:
        if op.kind == "nn.matmul":
            layers.append([np.array(w[op.operands[1].name]), None, None])
        elif op.kind == "nn.add":
            layers[-1][1] = np.array(w[op.operands[1].name])
        elif op.kind == "snn.lif":
            layers[-1][2] = float(np.array(w[op.operands[1].name]).reshape(-1)[0])
    return layers


def spikingjelly_runner(graph, x: np.ndarray, steps: int, hoist: bool = False):
    """The same IF network (mpc's converted weights and thresholds) as SpikingJelly multi-step layers
    (Linear + IFNode, step_mode 'm', soft reset, torch backend); hoist: the first Linear runs once per
    sample and its output is repeated over T (what mpc's lowering does), else on all T·N rows."""
    import torch
    from spikingjelly.activation_based import functional, layer, neuron
    mods = []
    for i, (wt, b, th) in enumerate(_layers(graph)):
        lin = layer.Linear(*wt.shape, step_mode="m")
        lin.weight.data, lin.bias.data = torch.from_numpy(wt.T.copy()), torch.from_numpy(b)
        mods += ([] if hoist and i == 0 else [lin])
        mods += [neuron.IFNode(v_threshold=th, v_reset=None, step_mode="m")] if th is not None else []
    first = torch.nn.Linear(*_layers(graph)[0][0].shape)
    first.weight.data, first.bias.data = (torch.from_numpy(_layers(graph)[0][0].T.copy()),
                                          torch.from_numpy(_layers(graph)[0][1]))
    net = torch.nn.Sequential(*mods)
    xt = torch.from_numpy(x)

    def once():
        with torch.no_grad():
            functional.reset_net(net)
            inp = first(xt).unsqueeze(0).expand(steps, -1, -1) if hoist else xt.unsqueeze(0).repeat(steps, 1, 1)
            net(inp).mean(0)
    once()
    return once


def sinabs_runner(graph, x: np.ndarray, steps: int):
    """The same IF network in sinabs 3.1 (nn.Linear + IAF with single spikes and subtractive reset, input
    [N, T, D]: sinabs's layout)."""
    import sinabs.activation as sa
    import sinabs.layers as sl
    import torch
    mods = []
    for wt, b, th in _layers(graph):
        lin = torch.nn.Linear(*wt.shape)
        lin.weight.data, lin.bias.data = torch.from_numpy(wt.T.copy()), torch.from_numpy(b)
        mods.append(lin)
        if th is not None:
            mods.append(sl.IAF(spike_threshold=torch.tensor(th), spike_fn=sa.SingleSpike,
                               reset_fn=sa.MembraneSubtract(), min_v_mem=None))
    net = torch.nn.Sequential(*mods)
    xt = torch.from_numpy(x).unsqueeze(1).repeat(1, steps, 1)

    def once():
        with torch.no_grad():
            for m in net:
                if isinstance(m, sl.IAF):
                    m.reset_states()
            net(xt).mean(1)
    once()
    return once


MAIN = "mpc model.py (fused chain)"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _model_py(c, folder: Path, lowering: str) -> None:
    """model.py of the same graph emitted with another numpy lowering pipeline."""
    import dataclasses

    from mpc.backends.base import emit
    from mpc.backends.numpy_backend import BACKEND
    folder.mkdir()
    (folder / "weights.npz").write_bytes(npz_bytes({w: c.graph.weights[w] for w in c.graph.used_weights()}))
    emit(dataclasses.replace(BACKEND, lowering=lowering), c.graph, folder, "lif", c.ctx)


def throughput(repeat: int, have_sj: bool, have_sinabs: bool = False) -> dict:
    """Samples/s of the MLP at T = 32, batch 256: model.py (fused chain / op by op event / dense synapses)
    vs SpikingJelly and sinabs, alternating round by round."""
    from mpc.driver.compiler import Settings, compile_model, write_outdir
    x, _ = _data("digits_test.npz")
    x = np.concatenate([x, x])[:256]
    settings = Settings(target="lif", quiet=True, calib=str(DATA / "digits_train.npz"))
    c = compile_model(str(MODELS / "digits_mlp.onnx"), settings)
    with tempfile.TemporaryDirectory() as tmp:
        write_outdir(c, settings, Path(tmp) / "m", False)   # the default lowering: one fused snn.chain
        _model_py(c, Path(tmp) / "e", "fuse-conv-epilogue,sparse-csr,snn-event")
        _model_py(c, Path(tmp) / "d", "fuse-conv-epilogue,sparse-csr")
        runners = {MAIN: mpc_runner(Path(tmp) / "m", x),
                   "mpc model.py (op by op, event)": mpc_runner(Path(tmp) / "e", x),
                   "mpc model.py (op by op, dense)": mpc_runner(Path(tmp) / "d", x)}
    if have_sj:
        runners["SpikingJelly multi-step"] = spikingjelly_runner(c.graph, x, 32)
        runners["SpikingJelly, 1st layer hoisted"] = spikingjelly_runner(c.graph, x, 32, hoist=True)
    if have_sinabs:
        runners["sinabs"] = sinabs_runner(c.graph, x, 32)
    # alternate the runners, round by round, so all see the same machine load; keep each one's best
    best = {k: _timed(fn) for k, fn in runners.items()}
    rounds = {k: [] for k in runners}
    load0 = os.getloadavg()[0]
    for _ in range(repeat):
        for k, fn in runners.items():
            t = _timed(fn)
            best[k] = min(best[k], t)
            rounds[k].append(len(x) / t)
    tp = {k: len(x) / best[k] for k in runners}
    print(f"\nthroughput, digits MLP, T = 32, batch 256, {os.cpu_count()} CPUs, {repeat} rounds, "
          f"OMP/NUMBA threads {os.environ.get('OMP_NUM_THREADS', '?')}/{os.environ.get('NUMBA_NUM_THREADS', '?')}, "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}:")
    for k, v in tp.items():
        r = np.array(rounds[k])
        print(f"  {k:<32} best {v:8.0f} samples/s; per round min {r.min():.0f}, median {np.median(r):.0f}")
    for base in [k for k in runners if k != MAIN]:
        ratios = np.array(rounds[MAIN]) / np.array(rounds[base])
        print(f"  ratio chain / {base}: best {tp[MAIN] / tp[base]:.1f}x; per round "
              f"min {ratios.min():.1f}x, median {np.median(ratios):.1f}x, max {ratios.max():.1f}x")
    return tp


def plot_throughput(tp) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    ax.bar(list(tp), list(tp.values()), color=[f"C{i + 2}" for i in range(len(tp))])
    ax.set_xticks(range(len(tp)), [k.replace("mpc model.py ", "mpc ") for k in tp], rotation=25, ha="right")
    ax.set_ylabel("samples / s (best round)")
    ax.set_title(f"digits MLP, lif T=32, batch 256, {os.environ.get('NUMBA_NUM_THREADS', 'default')} thread(s)")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "bench_snn_throughput.png", metadata={"Software": None})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--steps", default="4,8,16,32,64")
    p.add_argument("--only", choices=("throughput", "sinabs"), default=None)
    args = p.parse_args(argv)
    if args.only == "sinabs":   # sinabs's converter alone: accuracy per T, no figure
        for model in SPECS:
            for fn in ("multi", "single"):
                acc = sinabs_lif(model, [int(s) for s in args.steps.split(",")], fn)
                print(f"| {model} (sinabs from_model, {fn}-spike, 99.9%) | " + " | ".join(
                    f"T={t}: {100 * a:.2f}" for t, a in acc.items()) + " |")
        return 0
    if args.only == "throughput":
        tp = throughput(args.repeat, importlib.util.find_spec("spikingjelly") is not None,
                        importlib.util.find_spec("sinabs") is not None)
        plot_throughput(tp)
        return 0
    steps = [int(s) for s in args.steps.split(",")]
    have_sj = importlib.util.find_spec("spikingjelly") is not None
    rows, energy = {}, {}
    for model in SPECS:
        for t in steps:
            r = mpc_lif(model, t)
            rows.setdefault(model, {})[t] = r["converted_accuracy"]
            rows[model]["source"] = r["source_accuracy"]
            if t == 32:
                energy[model] = r["spiking"]["cost"]
        rows[model]["nlif"] = mpc_nlif(model, 0.01 if model == "mlp" else 0.05)["converted_accuracy"]
        if have_sj:
            rows[model]["sj"] = spikingjelly_lif(model, steps)
        if importlib.util.find_spec("sinabs") is not None:
            rows[model]["sinabs"] = sinabs_lif(model, steps)
    print("| model | source | " + " | ".join(f"lif T={t}" for t in steps) + " | nlif |")
    print("|---|---|" + "---|" * (len(steps) + 1))
    for model, r in rows.items():
        print(f"| {model} (mpc) | {100 * r['source']:.2f} | " + " | ".join(f"{100 * r[t]:.2f}" for t in steps)
              + f" | {100 * r['nlif']:.2f} |")
        if "sj" in r:
            print(f"| {model} (SpikingJelly 99.9%) | | " + " | ".join(f"{100 * r['sj'][t]:.2f}" for t in steps) + " | |")
        if "sinabs" in r:
            print(f"| {model} (sinabs 99.9%) | | " + " | ".join(f"{100 * r['sinabs'][t]:.2f}" for t in steps) + " | |")
    tp = throughput(args.repeat, have_sj, importlib.util.find_spec("sinabs") is not None)
    print("\nper inference at T = 32 (lif):")
    for model, cst in energy.items():
        print(f"  {model}: source {cst['source_macs']} MACs = {cst['energy_source_pj'] / 1e3:.1f} nJ; "
              f"spiking {cst['synops']:.0f} SynOps + {cst['dense_macs']} MACs = {cst['energy_snn_pj'] / 1e3:.1f} nJ "
              f"(fp32 adds), {cst['energy_snn_int_pj'] / 1e3:.1f} nJ (int32 adds)")
    plot(rows, steps, tp, energy)
    return 0


def plot(rows, steps, tp, energy) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=100)
    ax = axes[0]
    for i, (model, r) in enumerate(rows.items()):
        ax.semilogx(steps, [100 * r[t] for t in steps], "o-", base=2, color=f"C{i}", label=f"{model} lif (mpc)")
        if "sj" in r:
            ax.semilogx(steps, [100 * r["sj"][t] for t in steps], "s--", base=2, color=f"C{i}",
                        label=f"{model} SpikingJelly ann2snn")
        if "sinabs" in r:
            ax.semilogx(steps, [100 * r["sinabs"][t] for t in steps], "^-.", base=2, color=f"C{i}",
                        label=f"{model} sinabs from_model")
        ax.axhline(100 * r["source"], color=f"C{i}", ls=":", lw=1, label=f"{model} source")
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(80, 100)
    ax.legend(fontsize=7)
    ax.set_title("accuracy vs T")
    ax = axes[1]
    ax.bar(list(tp), list(tp.values()), color=[f"C{i + 2}" for i in range(len(tp))])
    ax.set_ylabel("samples / s")
    ax.set_title("simulation throughput, MLP, T=32, batch 256")
    ax = axes[2]
    names = list(energy)
    xs = np.arange(len(names))
    ax.bar(xs - 0.25, [energy[m]["energy_source_pj"] / 1e3 for m in names], 0.25, label="source (fp32 MACs)")
    ax.bar(xs, [energy[m]["energy_snn_pj"] / 1e3 for m in names], 0.25, label="lif T=32 (fp32 adds)")
    ax.bar(xs + 0.25, [energy[m]["energy_snn_int_pj"] / 1e3 for m in names], 0.25, label="lif T=32 (int32 adds)")
    ax.set_xticks(xs, names)
    ax.set_ylabel("nJ per inference (Horowitz 2014, 45 nm)")
    ax.legend(fontsize=7)
    ax.set_title("energy estimate")
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "bench_snn.png", metadata={"Software": None})


if __name__ == "__main__":
    sys.exit(main())
