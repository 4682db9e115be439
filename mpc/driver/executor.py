"""Where the points of a sweep run: in this process (`local`, the default), in a pool of local worker
processes (`process`, `--jobs N`) or on a Ray cluster (`ray`, `--executor ray [--ray-address ADDR]`).

A task is a function named by its import path (`"mpc.driver.sweep:sweep_point"`) applied to a payload of
plain data (model path, flags, option values): workers import the function themselves, so no Python
closure is ever pickled. Results come back in the order the points were given, whichever executor ran
them and whichever finished first, so the files a sweep writes are byte-identical across executors.

A point whose worker raises or dies is run once more; a point that fails twice is returned as an
Outcome with its error (and the point's name), and the other points are kept.
"""
from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from mpc.errors import BadFlag

KINDS = ("local", "process", "ray")
ATTEMPTS = 2   # a failed point is retried once


@dataclass(frozen=True)
class Point:
    """One point of a sweep: a stable name (`gamma=0.25`) and the plain-data payload its task gets."""

    name: str
    payload: dict


@dataclass(frozen=True)
class Outcome:
    """What one point gave: its value, or the error of its last attempt (value None)."""

    name: str
    value: Any
    error: str | None
    attempts: int

    @property
    def ok(self) -> bool:
        """Whether the point produced a value."""
        return self.error is None


@dataclass(frozen=True)
class ExecutorSpec:
    """The executor flags as typed values: kind, worker count, Ray address (None: a local cluster)."""

    kind: str = "local"
    jobs: int = 1
    address: str | None = None


LOCAL = ExecutorSpec()   # the default: every point in this process


def resolve(fn: str):
    """The function named `package.module:function`."""
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def _call(fn: str, payload: dict) -> Any:
    return resolve(fn)(payload)


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0]


def run_points(fn: str, points: list[Point], spec: ExecutorSpec = LOCAL, on_done=None) -> list[Outcome]:
    """Apply the task `fn` to every point on the executor `spec`; outcomes in the order of `points`
    (`on_done()`, if given, is called in this process as each point finishes: a progress bar)."""
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ValueError(f"point names must be distinct: {names}")
    runner = {"local": _run_local, "process": _run_process, "ray": _run_ray}[spec.kind]
    return runner(fn, points, spec, on_done or (lambda: None))


def _run_local(fn: str, points: list[Point], spec: ExecutorSpec, on_done) -> list[Outcome]:
    """In this process, one point after the other (a crash of the process ends the sweep)."""
    outcomes = []
    for p in points:
        error = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                outcomes.append(Outcome(p.name, _call(fn, p.payload), None, attempt))
                break
            except Exception as e:  # noqa: BLE001 - a failed point is reported, the sweep goes on
                error = _describe(e)
        else:
            outcomes.append(Outcome(p.name, None, error, ATTEMPTS))
        on_done()
    return outcomes


def _serve(conn) -> None:
    """Worker process body: run (task, payload) messages until None, answering ("ok", value) or ("error", message)."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, payload = message
        try:
            conn.send(("ok", _call(fn, payload)))
        except Exception as e:  # noqa: BLE001 - the parent reports it by the point's name
            conn.send(("error", _describe(e) + "\n" + traceback.format_exc(limit=3)))


def _context():
    """forkserver: workers are forked from a clean, single-threaded server that has already imported mpc
    (a thread-safe fork, and cheap)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mpc.driver.sweep"])
    return ctx


@dataclass
class _Worker:
    """A long-lived worker process (it keeps its caches: loaded model, compiled kernels) and its point."""

    proc: Any
    conn: Any
    job: tuple[int, int] | None = None   # (point index, attempt)


def _spawn(ctx) -> _Worker:
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(there,), daemon=True)
    proc.start()
    there.close()
    return _Worker(proc, here)


def _run_process(fn: str, points: list[Point], spec: ExecutorSpec, on_done) -> list[Outcome]:
    """`spec.jobs` long-lived local worker processes fed one point at a time; a worker that dies takes only
    its own point with it: it is replaced and the point retried."""
    ctx = _context()
    workers = [_spawn(ctx) for _ in range(max(1, min(spec.jobs, len(points))))]
    todo = [(i, 1) for i in reversed(range(len(points)))]   # pop() from the end keeps the given order
    done: dict[int, Outcome] = {}
    try:
        while len(done) < len(points):
            for w in workers:
                if w.job is None and todo:
                    w.job = todo.pop()
                    w.conn.send((fn, points[w.job[0]].payload))
            busy = [w for w in workers if w.job is not None]
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
            for k, w in enumerate(workers):
                if w.job is None or not (w.conn.poll() or not w.proc.is_alive()):
                    continue
                (i, attempt), (status, value) = w.job, _receive(w)
                w.job = None
                if status == "died":
                    workers[k] = _spawn(ctx)
                if status != "ok" and attempt < ATTEMPTS:
                    todo.append((i, attempt + 1))
                    continue
                ok = status == "ok"
                done[i] = Outcome(points[i].name, value if ok else None, None if ok else value.splitlines()[0],
                                  attempt)
                on_done()
    finally:
        _stop(workers)
    return [done[i] for i in range(len(points))]


def _receive(w: _Worker) -> tuple[str, Any]:
    """The worker's answer, or ("died", how) when it exited without one."""
    try:
        if w.conn.poll():
            return w.conn.recv()
    except (EOFError, OSError):
        pass
    w.proc.join()
    w.conn.close()
    return "died", f"worker died (exit code {w.proc.exitcode})"


def _stop(workers: list[_Worker]) -> None:
    """Ask every worker to finish, then make sure it has."""
    for w in workers:
        try:
            w.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
    for w in workers:
        w.proc.join(timeout=5)
        if w.proc.is_alive():
            w.proc.terminate()
            w.proc.join()
        w.conn.close()


def _run_ray(fn: str, points: list[Point], spec: ExecutorSpec, on_done) -> list[Outcome]:
    """As Ray tasks (one CPU each) on the cluster at `spec.address`, or on a local one of `spec.jobs` CPUs
    when none is running yet; Ray's own retries are off so that every executor retries the same way."""
    try:
        import ray
    except ImportError:
        raise BadFlag("--executor ray needs Ray: pip install 'mpc[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=spec.address, num_cpus=None if spec.address else max(1, spec.jobs),
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    task = ray.remote(num_cpus=1, max_retries=0)(_call)
    attempts = [1] * len(points)
    refs = {task.remote(fn, p.payload): i for i, p in enumerate(points)}
    done: dict[int, Outcome] = {}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        i = refs.pop(ready[0])
        try:
            done[i] = Outcome(points[i].name, ray.get(ready[0]), None, attempts[i])
        except Exception as e:  # noqa: BLE001 - task error or dead worker: retry once, then report
            if attempts[i] < ATTEMPTS:
                attempts[i] += 1
                refs[task.remote(fn, points[i].payload)] = i
                continue
            done[i] = Outcome(points[i].name, None, _ray_error(e), attempts[i])
        on_done()
    return [done[i] for i in range(len(points))]


def _ray_error(e: BaseException) -> str:
    """The first line of the task's own error when Ray wraps one, else Ray's."""
    cause = getattr(e, "cause", None)
    return _describe(cause if isinstance(cause, BaseException) else e)


def add_executor_flags(p: argparse.ArgumentParser) -> None:
    """--executor, --jobs, --ray-address on a sweep command."""
    p.add_argument("--executor", choices=KINDS, default=None,
                   help="where sweep points run: here (local, default), a process pool (process) or Ray (ray)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes (process executor; CPUs of a new local Ray cluster); implies process")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="connect to this running Ray cluster (ray executor; default: start a local one)")


def executor_spec(args) -> ExecutorSpec:
    """The ExecutorSpec the flags ask for; BadFlag for contradictory or out-of-range values."""
    kind = args.executor or ("process" if args.jobs is not None else "local")
    if args.jobs is not None and args.jobs < 1:
        raise BadFlag(f"--jobs: expected an integer >= 1, got {args.jobs}")
    if args.ray_address and kind != "ray":
        raise BadFlag("--ray-address applies to --executor ray only")
    if kind == "local" and args.jobs not in (None, 1):
        raise BadFlag("--jobs needs --executor process or ray (the local executor runs one point at a time)")
    return ExecutorSpec(kind, args.jobs or (os.cpu_count() or 1 if kind != "local" else 1), args.ray_address)

