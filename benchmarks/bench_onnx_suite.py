"""Benchmark: ONNX's node test cases through mpc's ONNX backend (mpc.onnx_backend).

Runs every non-expanded node test case of the installed onnx (1,404 for onnx 1.23), regenerated from
`onnx.backend.test.case.node`, through prepare + run against ONNX's reference outputs, and counts
per op: pass, rejected (mpc's UnsupportedOp/BadModel), wrong (numbers, dtype or shape differ) and
crash (any other exception); rejections are also tallied by reason (opset < 13, input element
type, no handler, other). Prints the tables, saves a bar chart, and with --write replaces the
tables in BENCHMARKS.md between its markers (so it can be re-run after new handlers land).

    python benchmarks/bench_onnx_suite.py [--write] [--png benchmarks/bench_onnx_suite.png] [--emitted]
"""
from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import onnx

from mpc.onnx_suite import OUTCOMES, classify, node_cases, op_of, rejection_reason

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench_onnx_suite:begin -->", "<!-- bench_onnx_suite:end -->"


def run_all(emitted: bool) -> tuple[dict[str, Counter], Counter, list[tuple[str, str, str]], float]:
    """Classify every non-expanded case: per-op counts, rejection reasons, (case, kind, message) of the
    wrong and crashed ones, and the seconds it took."""
    cases = node_cases(expanded=False)
    per_op: dict[str, Counter] = defaultdict(Counter)
    reasons: Counter = Counter()
    bad = []
    t0 = time.perf_counter()
    for case in cases:
        out = classify(case, check_emitted=None if emitted else False)
        per_op[op_of(case)][out.kind] += 1
        per_op[op_of(case)]["specialized"] += out.kind == "pass" and out.message == "specialized"
        if out.kind == "rejected":
            reasons[rejection_reason(out.message)] += 1
        elif out.kind in ("wrong", "crash"):
            bad.append((case.name, out.kind, out.message))
    return per_op, reasons, bad, time.perf_counter() - t0


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def tables(per_op: dict[str, Counter], reasons: Counter, bad: list) -> str:
    """Markdown: totals, rejection reasons, then one row per op."""
    total = Counter()
    for c in per_op.values():
        total.update(c)
    n = sum(total[k] for k in OUTCOMES)
    lines = [f"onnx {onnx.__version__}: {n} non-expanded node test cases, {len(per_op)} ops.", "",
             _row(["", *OUTCOMES]), _row(["---"] * (len(OUTCOMES) + 1)),
             _row(["**total**", *(total[k] for k in OUTCOMES)]), "",
             (f"Of the passes, {total['specialized']} ran specialized on the values of graph inputs that mpc needs "
             f"at import (a bound, axes, a shape: `mpc convert` refuses those models with one line)."), "",
             "Rejections by reason:", "",
             _row(["reason", "cases"]), _row(["---", "---"])]
    opset = sum(v for k, v in reasons.items() if k.startswith("opset"))
    lines += [_row([f"opset < 13 (all versions: {opset})" if k == "_opset" else k, v])
              for k, v in _reason_rows(reasons, opset)]
    if bad:
        lines += ["", "Wrong or crashed:", ""] + [f"- `{name}` ({kind}): {msg[:160]}" for name, kind, msg in bad]
    lines += ["", "Per op:", "", _row(["op", "cases", *OUTCOMES]), _row(["---"] * (len(OUTCOMES) + 2))]
    for op in sorted(per_op):
        c = per_op[op]
        lines.append(_row([op, sum(c.values()), *(c[k] or "" for k in OUTCOMES)]))
    return "\n".join(lines)


def _reason_rows(reasons: Counter, opset: int) -> list[tuple[str, int]]:
    """Reasons sorted by count, the opset versions summed into one row first."""
    rows = [("_opset", opset)] if opset else []
    return rows + sorted(((k, v) for k, v in reasons.items() if not k.startswith("opset")), key=lambda kv: -kv[1])


def plot(per_op: dict[str, Counter], reasons: Counter, path: Path) -> None:
    """Two bar charts: the outcome totals, and rejections by reason."""
    total = Counter()
    for c in per_op.values():
        total.update(c)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.bar(OUTCOMES, [total[k] for k in OUTCOMES], color=["tab:green", "tab:gray", "tab:red", "tab:purple"])
    for i, k in enumerate(OUTCOMES):
        a.text(i, total[k], str(total[k]), ha="center", va="bottom")
    a.set_title(f"ONNX node tests through mpc (onnx {onnx.__version__})")
    a.set_ylabel("cases")
    opset = sum(v for k, v in reasons.items() if k.startswith("opset"))
    rows = [("opset < 13", opset)] + [(k, v) for k, v in reasons.most_common() if not k.startswith("opset")][:11]
    b.barh([k for k, _ in rows][::-1], [v for _, v in rows][::-1], color="tab:gray")
    b.set_title("rejections by reason (top 12)")
    b.set_xlabel("cases")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_benchmarks(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace the text between the markers in BENCHMARKS.md (they must be there)."""
    doc = path.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    path.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main() -> None:
    """Run, print, plot and optionally write BENCHMARKS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the tables in BENCHMARKS.md")
    ap.add_argument("--png", default=str(ROOT / "benchmarks" / "bench_onnx_suite.png"))
    ap.add_argument("--emitted", action="store_true", help="also check model.py on the seeded sample")
    args = ap.parse_args()
    per_op, reasons, bad, seconds = run_all(args.emitted)
    text = tables(per_op, reasons, bad)
    print(text)
    print(f"\n{seconds:.1f} s for prepare + run of every case")
    plot(per_op, reasons, Path(args.png))
    if args.write:
        write_benchmarks(text)


if __name__ == "__main__":
    main()
