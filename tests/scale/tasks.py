"""Tasks the executor tests run in workers, named by import path (`scale.tasks:square`) like mpc's own."""
from __future__ import annotations

import os
from pathlib import Path


def square(payload: dict) -> int:
    """payload["x"] squared."""
    return payload["x"] ** 2


def die_once(payload: dict) -> int:
    """Kill the worker process on the first call for this marker file (a crash, not an exception), then
    return payload["x"] squared on the retry."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text("died once\n")
        os._exit(7)
    return payload["x"] ** 2


def always_fails(payload: dict) -> int:
    """Raise for payload["bad"], square the others."""
    if payload["x"] == payload["bad"]:
        raise RuntimeError(f"point {payload['x']} is broken")
    return payload["x"] ** 2


def sweep_point_failing_1(payload: dict) -> float:
    """mpc's sweep task, except that γ = 1 always raises."""
    from mpc.driver.sweep import sweep_point
    if payload["value"] == 1.0:
        raise RuntimeError("injected failure")
    return sweep_point(payload)
