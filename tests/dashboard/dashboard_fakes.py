"""Pool snapshots and futures made up for the dashboard tier's tests.

Shapes follow docs/internals.md ("Memory figures", "Scheduler HTTP API").
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB

THRESHOLDS = {"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}


def figures(limit: int | None = 4 * GiB, managed: int = 0, unmanaged: int = 0, spilled: int = 0,
            state: str = "normal", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "limit": limit, "process": managed + unmanaged, "managed": managed,
        "unmanaged": unmanaged, "spilled": spilled, "cgroup_usage": None,
        "paused": state == "paused", "state": state,
        "spill_count": 0, "spill_bytes": 0, "spill_seconds": 0.0, "spill_busy_seconds": 0.0,
        "unspill_count": 0, "unspill_bytes": 0, "unspill_seconds": 0.0,
        "spill_full": False, "thresholds": dict(THRESHOLDS),
    }
    base.update(extra)
    return base


def worker(name: str, memory: dict[str, Any] | None = None, status: str = "running",
           **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name, "address": f"tcp://127.0.0.1:{9000 + sum(map(ord, name)) % 1000}", "host": "127.0.0.1",
        "node": "node-a", "pid": 100, "nthreads": 2, "status": status,
        "memory": memory if memory is not None else figures(),
        "memory_restarts": 0, "tasks": {"executing": 1, "ready": 2}, "keys": 3,
        "last_seen": 1000.0,
    }
    base.update(extra)
    return base


def snapshot(workers: list[dict[str, Any]], events: list[dict[str, Any]] | None = None,
             tasks: dict[str, int] | None = None, factor: int = 2,
             shortfall: int = 0) -> dict[str, Any]:
    def total(field: str) -> int:
        return sum(int(w["memory"].get(field) or 0) for w in workers)

    return {
        "scheduler": {"address": "tcp://127.0.0.1:8786", "dashboard": "http://127.0.0.1:8786/dashboard/",
                      "started": 1000.0},
        "workers": workers,
        "memory": {"limit": total("limit"), "managed": total("managed"),
                   "unmanaged": total("unmanaged"), "spilled": total("spilled")},
        "tasks": tasks if tasks is not None else {"waiting": 1, "queued": 2, "processing": 3,
                                                   "memory": 4, "erred": 0, "released": 5},
        "replication": {"factor": factor, "shortfall": shortfall},
        "events": events or [],
    }


class ChangingPool:
    """A snapshot source whose workers' memory grows each time ``step()`` is called."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.steps = 0
        self.started = time.time() - 60.0  # events land inside the page's 10-minute timeline
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self.steps += 1

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            n = self.steps
        workers = []
        for i, name in enumerate(self.names):
            managed = (200 + 150 * n + 100 * i) * MiB
            state = "spilling" if i == 1 else "normal"
            mem = figures(limit=4 * GiB, managed=managed, unmanaged=300 * MiB,
                          spilled=n * 64 * MiB, state=state,
                          spill_bytes=n * 64 * MiB, spill_count=n * 4)
            workers.append(worker(name, mem, memory_restarts=i))
        events = [{"time": self.started + 5.0 * k, "kind": "pause", "worker": self.names[0],
                   "message": f"pause #{k}"} for k in range(n)]
        return copy.deepcopy(snapshot(workers, events))


class FakeFuture:
    """The documented Future surface: key, status, done(), add_done_callback(fn)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.status = "pending"
        self._callbacks: list[Callable[[Any], object]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self.status != "pending"

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        with self._lock:
            if not self.done():
                self._callbacks.append(fn)
                return
        fn(self)

    def finish_silently(self, status: str = "finished") -> None:
        """Done, but the callbacks never come (a client that lost them in a race)."""
        self.status = status

    def finish(self, status: str = "finished") -> None:
        with self._lock:
            self.status = status
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)
