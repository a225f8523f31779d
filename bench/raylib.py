"""Running a Ray shape of ``ray_peer.py`` in a subprocess and reading its result."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

PEER = Path(__file__).resolve().parent / "ray_peer.py"


def available() -> str | None:
    """None when Ray is installed, else why not (the tables then say so)."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return f"ray is not installed ({exc}); it is in the bench extra"
    return None


def run(shape: str, timeout: float = 600, **params: Any) -> dict[str, Any]:
    """Run one shape; a failure is returned as ``{"error": ...}``, never raised."""
    # ...CLUSTER=0: Ray keeps the loopback addresses of a several-node cluster on this
    # machine (see ray_peer._start_nodes)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    try:
        proc = subprocess.run([sys.executable, str(PEER), shape, json.dumps(params)],
                              check=False, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}


def repeat(shape: str, repeats: int, why_not: str | None, **params: Any) -> list[dict[str, Any]]:
    """``repeats`` runs of one shape, none when ``why_not`` says Ray is left out."""
    runs = [run(shape, **params) for _ in range(repeats)] if why_not is None else []
    print(f"{shape} ray: {runs}", flush=True)
    return runs


def median_of(runs: list[dict[str, Any]], figure: str) -> float | None:
    """The median of ``figure`` over the runs that produced it (None if none did)."""
    values = [r[figure] for r in runs if figure in r]
    return statistics.median(values) if values else None


def warn_unless_equal(what: str, *groups: list[dict[str, Any]]) -> None:
    """Each run records a ``check`` of the values it handled: every system must agree."""
    checks = {round(r["check"], 3) for runs in groups for r in runs if "check" in r}
    if len(checks) != 1:
        print(f"WARNING: {what} values differ between systems: {checks}")
