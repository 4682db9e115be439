"""`mpc train-snn --arch ltc-srnn:H`: report.json contents, bad flags as one-line errors, and the memory claim
behind FPTT: the tensors autograd keeps for one backward do not grow with T (they do with BPTT)."""
from __future__ import annotations

import json

import pytest
from cli_helpers import error_line, run_cli

torch = pytest.importorskip("torch")

from mpc.train.fptt import FPTT, bptt_sequence, fptt_sequence, weighted_ce
from mpc.train.ltc_srnn import LTCSRNN


def test_train_snn_writes_a_report(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train-snn", "--task", "digits-seq", "--arch", "ltc-srnn:8", "--method",
                         "fptt", "--seq-len", "8", "--limit", "32", "--epochs", "2", "--seed", "1", "-o", out)
    assert (rc, err) == (0, ""), err
    r = json.loads((out / "report.json").read_text())
    assert (r["task"], r["method"], r["seq_len"], r["train_samples"]) == ("digits-seq", "fptt", 8, 32)
    assert [e["epoch"] for e in r["epochs"]] == [1, 2]
    assert all(0 <= e["test_accuracy"] <= 1 and e["step_ms"] > 0 for e in r["epochs"])
    assert r["peak_memory_mb"] > 0 and "saved_tensors_hooks" in r["peak_memory_measure"]
    rc, _, err = run_cli(capsys, "train-snn", "--task", "digits-seq", "--arch", "ltc-srnn:8", "--method", "fptt",
                         "--seq-len", "8", "--limit", "32", "--seed", "1", "-o", out)
    assert rc == 2 and "exists" in error_line(err)


@pytest.mark.parametrize("flags, message", [
    (["--arch", "lstm:8"], "--arch: expected ltc-srnn:HIDDEN"),
    (["--arch", "ltc-srnn:8", "--seq-len", "5"], "--seq-len: 5 does not divide the 64 pixels"),
    ([], "needs --arch ltc-srnn:HIDDEN"),
    (["--arch", "ltc-srnn:8", "--task", "first-last-xor"], "takes --task smnist|psmnist|digits-seq"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    rc, _, err = run_cli(capsys, "train-snn", "--task", "digits-seq", "--method", "fptt", *flags, "-o", tmp_path / "x")
    assert rc == 2 and message in error_line(err)
    assert not (tmp_path / "x").exists()


def _saved_per_backward(method: str, steps: int) -> int:
    """The most tensor elements autograd saved for any one backward while training one batch."""
    torch.manual_seed(0)
    model = LTCSRNN(2, 6, 10, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.rand(4, steps, 2), torch.randint(0, 10, (4,))
    counts = [0]
    real = opt.step

    def step_and_mark(*a, **k):       # an optimizer step follows every backward: start a new count
        counts.append(0)
        return real(*a, **k)
    opt.step = step_and_mark

    def pack(t):
        counts[-1] += t.numel()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if method == "fptt":
            fptt_sequence(model, FPTT(model.parameters(), 0.5), opt, x, y, weighted_ce)
        else:
            bptt_sequence(model, opt, x, y, weighted_ce)
    return max(counts)


def test_fptt_keeps_the_same_graph_for_any_length_bptt_grows_with_it():
    assert _saved_per_backward("fptt", 40) == _saved_per_backward("fptt", 5)
    assert _saved_per_backward("bptt", 40) >= 7 * _saved_per_backward("bptt", 5)


def _probe_accuracy(**init) -> float:
    """Held-out accuracy of a logistic-regression probe on the untrained layer's spike counts and final membrane
    (digits pixel by pixel, 64 steps): how much of the input the initial dynamics keep."""
    from sklearn.linear_model import LogisticRegression

    from mpc.driver.train_snn_fptt import load_task, sequences
    x, y = load_task("digits-seq", 0)
    x, y = torch.from_numpy(sequences(x, 64)[:900]), y[:900]
    model = LTCSRNN(1, 64, 10, seed=0, **init)
    with torch.no_grad():
        state, counts = model.init_state(len(y)), 0
        for t in range(64):
            _, state = model.step(x[:, t], state)
            counts = counts + state[2]
        feats = torch.cat([counts, state[0]], 1).numpy()
    probe = LogisticRegression(max_iter=2000).fit(feats[:600], y[:600])
    return probe.score(feats[600:], y[600:])


def test_default_init_keeps_more_of_the_input_than_zero_gate_biases():
    # zero gate biases (membrane time constant of 2 steps) and unscaled input weights forget most digits
    plain = _probe_accuracy(input_gain=1.0, tau_bias=0.0, rho_bias=0.0)
    assert _probe_accuracy() > max(0.35, plain + 0.15)
