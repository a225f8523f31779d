"""Prometheus ``/metrics`` for the scheduler and the workers.

One scrape of the scheduler shows the pool (tasks by state, workers by status, replication)
and every worker's memory figures labelled ``worker="<name>"``; a worker's own ``/metrics``
shows the same per-worker families for itself alone, so dashboards built on either agree.
Names follow Prometheus conventions: base units (bytes, seconds), ``_total`` on counters only,
one family per quantity with a label for its kinds (``type``, ``state``, ``threshold``).

Not covered: serving the text (the scheduler and worker apps route ``GET /metrics`` here),
and authentication (``memkube.security.Auth`` lets the metrics token read ``/metrics``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .promtext import Family, render
from .snapshot import MEMORY_TYPES, THRESHOLD_NAMES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_STATES = ("normal", "spilling", "paused")
_STATUSES = ("running", "paused", "retiring")
_WORKER_TASK_STATES = ("executing", "ready")
_POOL_TASK_STATES = ("waiting", "queued", "processing", "memory", "erred", "released")


class _WorkerFamilies:
    """The per-worker families; each worker added contributes samples labelled by its name."""

    def __init__(self) -> None:
        self.memory = Family(
            "memkube_worker_memory_bytes", "gauge",
            "Worker memory by type: managed (values held), unmanaged (the rest of the "
            "process), spilled (on disk).")
        self.process = Family(
            "memkube_worker_process_memory_bytes", "gauge",
            "Resident memory of the worker process as measured.")
        self.cgroup = Family(
            "memkube_worker_cgroup_memory_bytes", "gauge",
            "Memory usage of the worker's cgroup, where it has one.")
        self.limit = Family(
            "memkube_worker_memory_limit_bytes", "gauge",
            "The worker's memory limit; absent when it has none.")
        self.threshold = Family(
            "memkube_worker_memory_threshold_bytes", "gauge",
            "Memory thresholds in bytes: target, spill, pause, terminate (disabled ones absent).")
        self.state = Family(
            "memkube_worker_memory_state", "gauge",
            "1 for the worker's current memory state (normal, spilling, paused), else 0.")
        self.paused = Family(
            "memkube_worker_paused", "gauge",
            "1 while the worker is paused by memory pressure (starts no task).")
        self.spill_full = Family(
            "memkube_worker_spill_full", "gauge",
            "1 while the spill disk or the max-spill cap is full.")
        self.spill_bytes = Family(
            "memkube_worker_spill_bytes_total", "counter", "Bytes written to the spill disk.")
        self.spill_count = Family(
            "memkube_worker_spill_total", "counter", "Values written to the spill disk.")
        self.spill_seconds = Family(
            "memkube_worker_spill_seconds_total", "counter", "Time spent spilling to disk.")
        self.unspill_bytes = Family(
            "memkube_worker_unspill_bytes_total", "counter", "Bytes read back from the spill disk.")
        self.unspill_count = Family(
            "memkube_worker_unspill_total", "counter", "Values read back from the spill disk.")
        self.unspill_seconds = Family(
            "memkube_worker_unspill_seconds_total", "counter", "Time spent reading spilled values.")
        self.restarts = Family(
            "memkube_worker_memory_restarts_total", "counter",
            "Times this worker restarted because it crossed the terminate threshold.")
        self.status = Family(
            "memkube_worker_status", "gauge",
            "1 for the worker's status in the pool (running, paused, retiring), else 0.")
        self.tasks = Family(
            "memkube_worker_tasks", "gauge", "Tasks on the worker by state (executing, ready).")
        self.keys = Family("memkube_worker_keys", "gauge", "Keys the worker holds (memory or disk).")
        self.threads = Family("memkube_worker_threads", "gauge", "Task threads of the worker.")

    def all(self) -> list[Family]:
        return [value for value in vars(self).values() if isinstance(value, Family)]

    def add(self, worker: str, figures: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        for kind in MEMORY_TYPES:
            self.memory.add(_num(figures.get(kind)), worker=worker, type=kind)
        self.process.add(_num(figures.get("process")), worker=worker)
        if figures.get("cgroup_usage") is not None:
            self.cgroup.add(_num(figures["cgroup_usage"]), worker=worker)
        limit = figures.get("limit")
        if limit:
            self.limit.add(_num(limit), worker=worker)
            thresholds = figures.get("thresholds") or {}
            for name in THRESHOLD_NAMES:
                fraction = thresholds.get(name)
                if fraction is not None:
                    self.threshold.add(int(limit * fraction), worker=worker, threshold=name)
        current = figures.get("state", "normal")
        for state in _STATES:
            self.state.add(state == current, worker=worker, state=state)
        self.paused.add(bool(figures.get("paused")), worker=worker)
        self.spill_full.add(bool(figures.get("spill_full")), worker=worker)
        self.spill_bytes.add(_num(figures.get("spill_bytes")), worker=worker)
        self.spill_count.add(_num(figures.get("spill_count")), worker=worker)
        self.spill_seconds.add(_num(figures.get("spill_seconds")), worker=worker)
        self.unspill_bytes.add(_num(figures.get("unspill_bytes")), worker=worker)
        self.unspill_count.add(_num(figures.get("unspill_count")), worker=worker)
        self.unspill_seconds.add(_num(figures.get("unspill_seconds")), worker=worker)
        if "memory_restarts" in extra:
            self.restarts.add(_num(extra["memory_restarts"]), worker=worker)
        if "status" in extra:
            for status in _STATUSES:
                self.status.add(extra["status"] == status, worker=worker, status=status)
        tasks = extra.get("tasks")
        if tasks is not None:
            for state in _WORKER_TASK_STATES:
                self.tasks.add(_num(tasks.get(state)), worker=worker, state=state)
        if "keys" in extra:
            self.keys.add(_num(extra["keys"]), worker=worker)
        if "nthreads" in extra:
            self.threads.add(_num(extra["nthreads"]), worker=worker)


def metrics_response(text: str) -> web.Response:
    """``text`` as the answer to a scrape, with the exposition format's content type."""
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


def render_worker_metrics(
    worker_name: str, figures: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> str:
    """A worker's own ``/metrics``: its memory figures, plus the optional fields of ``extra``
    (``memkube.dashboard.snapshot.WorkerExtra``: nthreads, tasks, keys, memory_restarts,
    status)."""
    families = _WorkerFamilies()
    families.add(worker_name, figures, extra or {})
    return render(families.all())


def render_scheduler_metrics(snapshot: Mapping[str, Any]) -> str:
    """The scheduler's ``/metrics`` from a pool snapshot (``GET /api/v1/pool``'s shape)."""
    workers = _WorkerFamilies()
    by_status = dict.fromkeys(_STATUSES, 0)
    for info in snapshot.get("workers", []):
        name = str(info.get("name", ""))
        workers.add(name, info.get("memory") or {}, info)
        status = info.get("status", "running")
        by_status[status] = by_status.get(status, 0) + 1
    return render(_pool_families(snapshot, by_status) + workers.all())


def _pool_families(snapshot: Mapping[str, Any], by_status: Mapping[str, int]) -> list[Family]:
    count = Family("memkube_workers", "gauge", "Workers in the pool by status.")
    for status, n in by_status.items():
        count.add(n, status=status)

    tasks = Family("memkube_tasks", "gauge", "Tasks known to the scheduler by state.")
    reported = snapshot.get("tasks") or {}
    for state in dict.fromkeys([*_POOL_TASK_STATES, *reported]):
        tasks.add(_num(reported.get(state)), state=state)

    pool = snapshot.get("memory") or {}
    memory = Family("memkube_pool_memory_bytes", "gauge",
                    "Memory of all workers together by type: managed, unmanaged, spilled.")
    for kind in MEMORY_TYPES:
        memory.add(_num(pool.get(kind)), type=kind)
    limit = Family("memkube_pool_memory_limit_bytes", "gauge",
                   "Sum of the workers' memory limits (0 when unlimited).")
    limit.add(_num(pool.get("limit")))

    replication = snapshot.get("replication") or {}
    factor = Family("memkube_replication_factor", "gauge",
                    "Copies kept of each key that clients hold.")
    factor.add(_num(replication.get("factor", 1)))
    shortfall = Family("memkube_replication_shortfall_keys", "gauge",
                       "Keys with fewer copies than the replication factor asks for.")
    shortfall.add(_num(replication.get("shortfall")))

    families = [count, tasks, memory, limit, factor, shortfall]
    started = (snapshot.get("scheduler") or {}).get("started")
    if started:
        start = Family("memkube_scheduler_start_time_seconds", "gauge",
                       "When the scheduler started, in seconds since the epoch.")
        start.add(_num(started))
        families.append(start)
    return families


def _num(value: Any) -> float:
    """A figure as a float; a missing figure reads as 0 so one gap never breaks a scrape."""
    if value is None:
        return 0.0
    return float(value)
