"""The dashboard's view model: everything the page shows, computed from a pool snapshot.

The page's JavaScript only draws; what a bar's parts are, which colour a worker gets, its
rates and its "why" sentences are decided here, in Python, where they are unit-tested.
``DashboardFeed`` holds the state that spans snapshots (rates, the memory chart) and is what
``GET /dashboard/api/pool`` serves.

Not covered: HTTP (``routes``) and drawing (``static/dashboard.js``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from .explain import EVENT_HINTS, DisplayState, display_state, explain_worker
from .rates import CounterRates, MemoryHistory
from .snapshot import THRESHOLD_NAMES

# Task states in the order work flows through them (the progress bar's segments).
TASK_STATE_ORDER: tuple[str, ...] = (
    "memory", "processing", "queued", "waiting", "erred", "released",
)
EVENTS_SHOWN = 200
EVENTS_PER_WORKER = 10


class WorkerView(TypedDict):
    name: str
    address: str
    host: str
    node: str | None
    state: DisplayState
    nthreads: int
    limit: int | None
    process: int
    managed: int
    unmanaged: int
    spilled: int
    thresholds: dict[str, int]  # threshold name -> bytes, disabled ones left out
    spill_rate: float  # bytes per second, over the last few seconds
    unspill_rate: float
    spill_full: bool
    memory_restarts: int
    executing: int
    ready: int
    keys: int
    last_seen: float | None
    why: list[str]
    events: list[dict[str, Any]]  # this worker's recent events, newest first


class TotalsView(TypedDict):
    workers: int
    by_state: dict[str, int]
    limit: int
    process: int
    managed: int
    unmanaged: int
    spilled: int
    spill_rate: float
    unspill_rate: float
    memory_restarts: int


class TaskCount(TypedDict):
    state: str
    count: int


class DashboardView(TypedDict):
    time: float
    scheduler: dict[str, Any]
    totals: TotalsView
    tasks: list[TaskCount]
    replication: dict[str, int]
    workers: list[WorkerView]
    events: list[dict[str, Any]]  # newest first
    event_hints: dict[str, str]
    history: list[tuple[float, int, int, int]]


def worker_view(worker: Mapping[str, Any], events: list[Mapping[str, Any]],
                rates: Mapping[str, float]) -> WorkerView:
    figures: Mapping[str, Any] = worker.get("memory") or {}
    limit = figures.get("limit") or None
    thresholds: Mapping[str, Any] = figures.get("thresholds") or {}
    tasks: Mapping[str, Any] = worker.get("tasks") or {}
    return {
        "name": str(worker.get("name", "")),
        "address": str(worker.get("address", "")),
        "host": str(worker.get("host", "")),
        "node": worker.get("node"),
        "state": display_state(worker),
        "nthreads": int(worker.get("nthreads") or 0),
        "limit": limit,
        "process": int(figures.get("process") or 0),
        "managed": int(figures.get("managed") or 0),
        "unmanaged": int(figures.get("unmanaged") or 0),
        "spilled": int(figures.get("spilled") or 0),
        "thresholds": {
            name: int(limit * thresholds[name])
            for name in THRESHOLD_NAMES
            if limit and thresholds.get(name) is not None
        },
        "spill_rate": rates.get("spill_bytes", 0.0),
        "unspill_rate": rates.get("unspill_bytes", 0.0),
        "spill_full": bool(figures.get("spill_full")),
        "memory_restarts": int(worker.get("memory_restarts") or 0),
        "executing": int(tasks.get("executing") or 0),
        "ready": int(tasks.get("ready") or 0),
        "keys": int(worker.get("keys") or 0),
        "last_seen": worker.get("last_seen"),
        "why": explain_worker(worker, events),
        "events": [dict(e) for e in reversed(events[-EVENTS_PER_WORKER:])],
    }


def build_view(snapshot: Mapping[str, Any], rates: CounterRates, history: MemoryHistory,
               now: float) -> DashboardView:
    """The view of ``snapshot``; ``rates`` and ``history`` must already have observed it."""
    events: list[Mapping[str, Any]] = sorted(
        snapshot.get("events") or [], key=lambda e: float(e.get("time") or 0))
    by_worker: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_worker.setdefault(str(event.get("worker", "")), []).append(event)

    workers = [
        worker_view(w, by_worker.get(str(w.get("name", "")), []), rates.rates(str(w.get("name"))))
        for w in snapshot.get("workers") or []
    ]
    workers.sort(key=lambda w: w["name"])
    by_state = dict.fromkeys(("normal", "spilling", "paused", "retiring"), 0)
    for w in workers:
        by_state[w["state"]] += 1

    reported_tasks: Mapping[str, Any] = snapshot.get("tasks") or {}
    states = [*TASK_STATE_ORDER, *(s for s in reported_tasks if s not in TASK_STATE_ORDER)]
    return {
        "time": now,
        "scheduler": dict(snapshot.get("scheduler") or {}),
        "totals": {
            "workers": len(workers),
            "by_state": by_state,
            "limit": sum(w["limit"] or 0 for w in workers),
            "process": sum(w["process"] for w in workers),
            "managed": sum(w["managed"] for w in workers),
            "unmanaged": sum(w["unmanaged"] for w in workers),
            "spilled": sum(w["spilled"] for w in workers),
            "spill_rate": sum(w["spill_rate"] for w in workers),
            "unspill_rate": sum(w["unspill_rate"] for w in workers),
            "memory_restarts": sum(w["memory_restarts"] for w in workers),
        },
        "tasks": [{"state": s, "count": int(reported_tasks.get(s) or 0)} for s in states],
        "replication": {
            "factor": int((snapshot.get("replication") or {}).get("factor") or 1),
            "shortfall": int((snapshot.get("replication") or {}).get("shortfall") or 0),
        },
        "workers": workers,
        "events": [dict(e) for e in reversed(events[-EVENTS_SHOWN:])],
        "event_hints": EVENT_HINTS,
        "history": history.points(),
    }


class DashboardFeed:
    """Takes snapshots on demand and turns them into views, remembering rates and history."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]],
                 clock: Callable[[], float] = time.time) -> None:
        self._snapshot = snapshot
        self._clock = clock
        self.rates = CounterRates()
        self.history = MemoryHistory()

    def view(self) -> DashboardView:
        snap = self._snapshot()
        now = self._clock()
        workers = snap.get("workers") or []
        self.rates.observe(now, ((str(w.get("name")), w.get("memory") or {}) for w in workers))
        figures = [w.get("memory") or {} for w in workers]
        self.history.observe(
            now,
            managed=sum(int(f.get("managed") or 0) for f in figures),
            unmanaged=sum(int(f.get("unmanaged") or 0) for f in figures),
            spilled=sum(int(f.get("spilled") or 0) for f in figures),
        )
        return build_view(snap, self.rates, self.history, now)
