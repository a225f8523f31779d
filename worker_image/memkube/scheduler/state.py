"""The scheduler as a state machine: events in, messages out, no I/O.

Every stimulus (a client's graph, a worker's finished task, a lost worker) is a method call
that updates :mod:`~memkube.scheduler.model` records and queues messages for workers and
clients; the aiohttp shell (:mod:`memkube.scheduler.server`) delivers them with
:meth:`SchedulerState.drain`. Unit tests drive this class directly and assert on the
messages, with no sockets and no sleeps.

Covered here: task lifecycle, placement, root-task queuing, data lifetime (reference
counting by clients and dependents), recovery after a worker is lost. Replication and
retirement policies live in :mod:`.replication` and :mod:`.retire` and act through the
same queues.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import cloudpickle

from ..errors import DataLostError, KilledWorkerError
from ..protocol import Message
from .model import (
    ERRED,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    RETIRING,
    RUNNING,
    TASK_STATES,
    WAITING,
    ClientState,
    TaskState,
    WorkerState,
)
from .replication import drop_surplus_replicas, replicate_key
from .retire import progress_retirements


class SchedulerState:
    """All scheduling decisions. See the module docstring."""

    def __init__(
        self,
        *,
        replication_factor: int = 1,
        allowed_failures: int = 3,
        worker_saturation: float = 1.1,
        clock: Any = time.monotonic,
    ) -> None:
        self.tasks: dict[str, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}  # by address
        self.clients: dict[str, ClientState] = {}
        self.replication_factor = replication_factor
        self.allowed_failures = allowed_failures
        self.worker_saturation = worker_saturation
        self.clock = clock
        self._queue: list[tuple[tuple[int, ...], int, TaskState]] = []  # root tasks
        self._seq = itertools.count()
        self.unrunnable: set[TaskState] = set()  # ready but no worker can take them
        self.underreplicated: set[TaskState] = set()
        self.events: list[dict[str, Any]] = []  # memory and lifecycle events for the timeline
        self._outbox_workers: dict[str, list[Message]] = defaultdict(list)
        self._outbox_clients: dict[str, list[Message]] = defaultdict(list)
        self.retirements: list[Any] = []  # active retire.Retirement objects
        self.avg_task_seconds = 0.005
        self.restarts_by_name: dict[str, int] = defaultdict(int)  # memory restarts
        # Callbacks run once when a key next settles (in memory, erred or forgotten); the
        # shell uses them to wait for recomputations, e.g. a gather during recovery.
        self.settle_callbacks: dict[str, list[Any]] = defaultdict(list)
        self.held_bytes = 0  # bytes of results on workers, replicas included
        self.peak_held_bytes = 0

    # ------------------------------------------------------------------ outbox

    def to_worker(self, ws: WorkerState, msg: Message) -> None:
        self._outbox_workers[ws.address].append(msg)

    def to_clients(self, client_ids: Iterable[str], msg: Message) -> None:
        for cid in client_ids:
            if cid in self.clients:
                self._outbox_clients[cid].append(msg)

    def drain(self) -> tuple[dict[str, list[Message]], dict[str, list[Message]]]:
        """Messages queued since the last call: (by worker address, by client id).

        Consecutive ``free-keys`` to one worker are merged, so releasing many keys is one
        message and one batch of work on the worker.
        """
        workers, clients = self._outbox_workers, self._outbox_clients
        self._outbox_workers, self._outbox_clients = defaultdict(list), defaultdict(list)
        return {a: _merge_frees(msgs) for a, msgs in workers.items()}, dict(clients)

    def log_event(self, kind: str, worker: str = "", message: str = "") -> None:
        self.events.append({"time": time.time(), "kind": kind, "worker": worker,
                            "message": message})
        del self.events[:-500]

    # ------------------------------------------------------------------ clients

    def add_client(self, client_id: str) -> None:
        cs = self.clients.get(client_id)
        if cs is None:
            self.clients[client_id] = ClientState(client_id)
        elif not cs.connected:
            # Reconnected within the grace period: repeat what it may have missed.
            cs.connected = True
            for ts in cs.wants:
                if ts.state == MEMORY:
                    self.to_clients([client_id], {"op": "key-in-memory", "key": ts.key,
                                                  "type": ts.type})
                elif ts.state == ERRED:
                    self._report_erred(ts, [client_id])

    def remove_client(self, client_id: str) -> None:
        """The client is gone for good: release everything it held."""
        cs = self.clients.pop(client_id, None)
        if cs is None:
            return
        for ts in list(cs.wants):
            ts.who_wants.discard(client_id)
            self._release_if_unneeded(ts)

    def update_graph(self, client_id: str, tasks: list[dict[str, Any]], wants: list[str]) -> None:
        """New tasks from a client, and the keys it now holds futures for.

        Each task is ``{"key", "run_spec", "deps", "priority"}``; a key that already exists is
        reused (pure calls deduplicate).
        """
        self.add_client(client_id)
        created = []
        for spec in tasks:  # create all first: dependencies may come later in the list
            key = spec["key"]
            ts = self.tasks.get(key)
            if ts is None:
                ts = TaskState(key, spec.get("run_spec"), tuple(spec.get("priority") or ()))
                self.tasks[key] = ts
            elif ts.run_spec is None and spec.get("run_spec") is not None and not ts.who_has:
                ts.run_spec = spec["run_spec"]
            created.append((ts, spec.get("deps") or ()))
        for ts, dep_keys in created:
            for dep_key in dep_keys:
                dep = self.tasks.get(dep_key)
                if dep is None:
                    # Only possible if the client released it before sending this graph.
                    dep = TaskState(dep_key, None)
                    self.tasks[dep_key] = dep
                    self._fail(dep, DataLostError(f"dependency {dep_key!r} was released"))
                ts.dependencies.add(dep)
                dep.dependents.add(ts)
        self.client_wants(client_id, wants)

    def client_wants(self, client_id: str, keys: Iterable[str]) -> None:
        cs = self.clients[client_id]
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                self.to_clients([client_id], {
                    "op": "key-cancelled", "key": key, "reason": "unknown key"})
                continue
            ts.who_wants.add(client_id)
            cs.wants.add(ts)
            if ts.state == MEMORY:
                self.to_clients([client_id], {"op": "key-in-memory", "key": key, "type": ts.type})
                self._check_replication(ts)
            elif ts.state == ERRED:
                self._report_erred(ts, [client_id])
            else:
                self._ensure_computed(ts)

    def release_keys(self, client_id: str, keys: Iterable[str]) -> None:
        cs = self.clients.get(client_id)
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            ts.who_wants.discard(client_id)
            if cs is not None:
                cs.wants.discard(ts)
            self._release_if_unneeded(ts)

    def cancel_keys(self, client_id: str, keys: Iterable[str]) -> None:
        """Cancel unfinished keys for every client; finished keys are just released."""
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            if ts.state in (MEMORY, ERRED):
                self.release_keys(client_id, [key])
                continue
            wanters = set(ts.who_wants)
            self.to_clients(wanters, {"op": "key-cancelled", "key": key, "reason": "cancelled"})
            for cid in wanters:
                if cid in self.clients:
                    self.clients[cid].wants.discard(ts)
            ts.who_wants.clear()
            self._release_if_unneeded(ts)

    def add_scattered(self, client_id: str, keys: dict[str, dict[str, Any]]) -> None:
        """Data a client uploaded: ``{key: {"nbytes", "type", "workers": [address]}}``."""
        self.add_client(client_id)
        for key, info in keys.items():
            ts = self.tasks.get(key)
            if ts is None:
                ts = TaskState(key, None)
                self.tasks[key] = ts
            for address in info.get("workers", ()):
                ws = self.workers.get(address)
                if ws is not None:
                    self.add_replica(ts, ws)
            if not ts.who_has:
                self._fail(ts, DataLostError(f"scattered key {key!r} reached no worker"))
            else:
                ts.nbytes = int(info.get("nbytes", 0))
                ts.type = str(info.get("type", ""))
                ts.state = MEMORY
                self._settled(ts)
        self.client_wants(client_id, keys)

    def replicate(self, keys: Iterable[str], n: int) -> None:
        for key in keys:
            ts = self.tasks.get(key)
            if ts is not None:
                ts.replicas_wanted = max(ts.replicas_wanted, n)
                self._check_replication(ts)

    # ------------------------------------------------------------------ workers

    def add_worker(
        self, address: str, name: str, nthreads: int, *, host: str = "", node: str = "",
        pid: int = 0, keys: dict[str, int] | None = None, memory: dict[str, Any] | None = None,
    ) -> WorkerState:
        old = next((w for w in self.workers.values() if w.name == name), None)
        if old is not None:
            self.remove_worker(old.address, reason="replaced by a worker of the same name")
        restarts = self.restarts_by_name.get(name, 0)
        ws = WorkerState(address, name, max(1, nthreads), host=host, node=node, pid=pid,
                         memory=dict(memory or {}), last_seen=self.clock(),
                         memory_restarts=restarts)
        self.workers[address] = ws
        self.log_event("worker-added", name, address)
        stale = []
        for key, nbytes in (keys or {}).items():
            ts = self.tasks.get(key)
            if ts is not None and ts.state == MEMORY:
                ts.nbytes = nbytes or ts.nbytes
                self.add_replica(ts, ws)
            else:
                stale.append(key)
        if stale:
            self.to_worker(ws, {"op": "free-keys", "keys": stale})
        self._retry_unrunnable()
        self._fill_workers()
        self.retry_replication()
        return ws

    def _retry_unrunnable(self) -> None:
        """Place tasks that were ready when no worker could run them (none, or all paused)."""
        for ts in list(self.unrunnable):
            self.unrunnable.discard(ts)
            if ts.state == NO_WORKER:
                ts.state = RELEASED
                self._make_ready(ts)

    def remove_worker(self, address: str, *, reason: str = "connection lost") -> None:
        """The worker is gone (crashed, killed, retired): recover what it had."""
        ws = self.workers.pop(address, None)
        if ws is None:
            return
        expected = ws.status == RETIRING
        self.log_event("worker-retired" if expected else "worker-lost", ws.name, reason)
        for ts in list(ws.processing):
            ws.processing.discard(ts)
            ts.processing_on = None
            if not expected:
                ts.suspicious += 1
            if ts.suspicious > self.allowed_failures:
                self._fail(ts, KilledWorkerError(
                    f"task {ts.key!r} was running on {ts.suspicious} workers that died; "
                    f"last: {ws.name} ({reason})"))
            else:
                ts.state = RELEASED
                if self._needed(ts):
                    self._ensure_computed(ts)
        for ts in list(ws.has_what):
            self.remove_replica(ts, ws)
            if ts.state == MEMORY and not ts.who_has:
                self._key_lost(ts)
            elif ts.state == MEMORY:
                self._check_replication(ts)
        for ts in self.tasks.values():
            ts.replicating_to.discard(ws)
        self._fill_workers()
        progress_retirements(self)

    def worker_heartbeat(self, address: str, memory: dict[str, Any], executing: int,
                         ready: int) -> None:
        ws = self.workers.get(address)
        if ws is None:
            return
        ws.memory = memory
        ws.executing, ws.ready = executing, ready
        ws.last_seen = self.clock()
        drop_surplus_replicas(self, ws)
        if self.underreplicated:
            self.retry_replication()

    def worker_status(self, address: str, status: str, reason: str = "") -> None:
        ws = self.workers.get(address)
        if ws is None or ws.status == RETIRING:
            return
        if status in ("paused", RUNNING) and status != ws.status:
            ws.status = status
            self.log_event("pause" if status == "paused" else "resume", ws.name, reason)
            if status == RUNNING:
                self._retry_unrunnable()
                self._fill_workers()

    def memory_restart(self, address: str, reason: str) -> None:
        ws = self.workers.get(address)
        if ws is not None:
            ws.memory_restarts += 1
            self.restarts_by_name[ws.name] += 1
            self.log_event("memory-restart", ws.name, reason)

    def stale_workers(self, timeout: float) -> list[str]:
        now = self.clock()
        return [w.address for w in self.workers.values() if now - w.last_seen > timeout]

    # ------------------------------------------------------------------ task results

    def task_finished(self, address: str, key: str, nbytes: int, type_: str,
                      duration: float = 0.0) -> None:
        ws = self.workers.get(address)
        ts = self.tasks.get(key)
        if ws is None:
            return
        if ts is None or (ts.state != PROCESSING and ts.state != MEMORY) or (
            ts.state == PROCESSING and ts.processing_on is not ws
        ):
            # Released, cancelled or reassigned meanwhile: the worker must not keep it.
            if ts is None or ws not in ts.who_has:
                self.to_worker(ws, {"op": "free-keys", "keys": [key]})
            return
        if duration > 0:
            self.avg_task_seconds = 0.9 * self.avg_task_seconds + 0.1 * duration
        if ts.state == PROCESSING:
            ws.processing.discard(ts)
            ts.processing_on = None
            ts.state = MEMORY
            ts.runs += 1
        ts.nbytes, ts.type = nbytes, type_
        self.add_replica(ts, ws)
        self.to_clients(ts.who_wants, {"op": "key-in-memory", "key": key, "type": type_})
        self._settled(ts)
        for dep in list(ts.dependents):
            if ts in dep.waiting_on:
                dep.waiting_on.discard(ts)
                if not dep.waiting_on and dep.state == WAITING:
                    self._make_ready(dep)
        for dep in list(ts.dependencies):
            dep.waiters.discard(ts)
            self._release_if_unneeded(dep)
        if not self._needed(ts):
            self._release(ts)
        else:
            self._check_replication(ts)
        self._fill_workers()
        progress_retirements(self)

    def task_erred(self, address: str, key: str, exception: bytes, traceback: str,
                   text: str) -> None:
        ws = self.workers.get(address)
        ts = self.tasks.get(key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        self._unassign(ts)
        ts.state = ERRED
        ts.exception, ts.traceback, ts.exception_text = exception, traceback, text
        self._report_erred(ts, ts.who_wants)
        self._settled(ts)
        self._propagate_error(ts)
        for dep in list(ts.dependencies):
            dep.waiters.discard(ts)
            self._release_if_unneeded(dep)
        self._release_if_unneeded(ts)
        self._fill_workers()
        progress_retirements(self)

    def add_keys(self, address: str, keys: dict[str, int]) -> None:
        """A worker now holds copies of ``keys`` (replication or fetched dependencies)."""
        ws = self.workers.get(address)
        if ws is None:
            return
        stale = []
        for key, nbytes in keys.items():
            ts = self.tasks.get(key)
            if ts is None or ts.state != MEMORY:
                stale.append(key)
                continue
            ts.replicating_to.discard(ws)
            ts.nbytes = ts.nbytes or nbytes
            self.add_replica(ts, ws)
        if stale:
            self.to_worker(ws, {"op": "free-keys", "keys": stale})
        progress_retirements(self)

    def lost_keys(self, address: str, keys: Iterable[str]) -> None:
        """A worker lost data it held (corrupt spill file, failed replica fetch)."""
        ws = self.workers.get(address)
        if ws is None:
            return
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            ts.replicating_to.discard(ws)
            if ws in ts.who_has:
                self.remove_replica(ts, ws)
                if ts.state == MEMORY and not ts.who_has:
                    self._key_lost(ts)
            self._check_replication(ts)

    def missing_data(self, address: str, key: str, dep_key: str, holders: list[str]) -> None:
        """A worker could get ``dep_key`` for ``key`` from none of ``holders``.

        The reporting worker itself lacking it is certain; a live peer failing to serve it
        may be transient (busy, paused), so its copy is given up only after repeated misses.
        """
        ws = self.workers.get(address)
        ts, dep = self.tasks.get(key), self.tasks.get(dep_key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        if dep is not None:
            dep.fetch_failures += 1
            for holder_address in holders:
                holder = self.workers.get(holder_address)
                if holder is None or holder not in dep.who_has:
                    continue
                if holder is ws or dep.fetch_failures >= 3:
                    self.remove_replica(dep, holder)
            if dep.state == MEMORY and not dep.who_has:
                dep.fetch_failures = 0
                self._key_lost(dep)
        self._unassign(ts)
        ts.state = RELEASED
        if self._needed(ts):
            self._ensure_computed(ts)
        self._fill_workers()

    def reschedule(self, address: str, key: str) -> None:
        """The worker gave a task back (paused or cannot fit its inputs)."""
        ws = self.workers.get(address)
        ts = self.tasks.get(key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        self._unassign(ts)
        ts.state = RELEASED
        if self._needed(ts):
            self._ensure_computed(ts)

    # ------------------------------------------------------------------ transitions

    def _unassign(self, ts: TaskState) -> None:
        """Take ``ts`` off the worker it was processing on (if any)."""
        if ts.processing_on is not None:
            ts.processing_on.processing.discard(ts)
            ts.processing_on = None

    def _needed(self, ts: TaskState) -> bool:
        return bool(ts.who_wants or ts.waiters)

    def _ensure_computed(self, ts: TaskState) -> None:
        """Make sure ``ts`` is (being) computed, computing released dependencies first."""
        if ts.state != RELEASED:
            return
        if ts.run_spec is None:
            self._fail(ts, DataLostError(
                f"key {ts.key!r} was scattered data whose every copy is lost; it cannot be "
                "recomputed"))
            return
        ts.waiting_on = set()
        for dep in ts.dependencies:
            dep.waiters.add(ts)
            if dep.state == ERRED:
                self._fail(ts, None, source=dep)
                return
            if dep.state != MEMORY:
                ts.waiting_on.add(dep)
        ts.state = WAITING
        for dep in list(ts.waiting_on):
            self._ensure_computed(dep)
            if ts.state != WAITING:  # a dependency failed and failed us
                return
        if not ts.waiting_on:
            self._make_ready(ts)

    def _make_ready(self, ts: TaskState) -> None:
        ts.waiting_on = set()
        if not ts.dependencies:
            ts.state = QUEUED
            heapq.heappush(self._queue, (ts.priority, next(self._seq), ts))
            self._fill_workers()
            return
        ws = self._choose_worker(ts)
        if ws is None:
            ts.state = NO_WORKER
            self.unrunnable.add(ts)
            return
        self._send_compute(ts, ws)

    def _choose_worker(self, ts: TaskState) -> WorkerState | None:
        candidates = [w for w in self.workers.values() if w.status == RUNNING]
        if not candidates:
            return None
        holders: dict[WorkerState, int] = defaultdict(int)
        for dep in ts.dependencies:
            for w in dep.who_has:
                holders[w] += dep.nbytes
        total = sum(dep.nbytes for dep in ts.dependencies)

        def cost(w: WorkerState) -> float:
            transfer = (total - holders.get(w, 0)) / 100e6  # ~100 MB/s between workers
            backlog = len(w.processing) / w.nthreads * self.avg_task_seconds
            return transfer + backlog

        return min(candidates, key=cost)

    def _slots(self, ws: WorkerState) -> int:
        if math.isinf(self.worker_saturation):  # no root-task queuing: flood the workers
            return 1 << 30
        return max(1, math.ceil(ws.nthreads * self.worker_saturation))

    def _fill_workers(self) -> None:
        """Hand queued root tasks to running workers with free slots, best priority first."""
        if not self._queue:
            return
        open_workers = [w for w in self.workers.values()
                        if w.status == RUNNING and len(w.processing) < self._slots(w)]
        while self._queue and open_workers:
            ws = min(open_workers, key=lambda w: len(w.processing) / w.nthreads)
            _, _, ts = heapq.heappop(self._queue)
            if ts.state != QUEUED:
                continue  # released or cancelled since it was queued
            self._send_compute(ts, ws)
            if len(ws.processing) >= self._slots(ws):
                open_workers.remove(ws)

    def _send_compute(self, ts: TaskState, ws: WorkerState) -> None:
        assert ts.run_spec is not None
        ts.state = PROCESSING
        ts.processing_on = ws
        ws.processing.add(ts)
        who_has = {dep.key: [w.address for w in dep.who_has] for dep in ts.dependencies}
        self.to_worker(ws, {"op": "compute-task", "key": ts.key, "run_spec": ts.run_spec,
                            "who_has": who_has, "priority": list(ts.priority),
                            "nbytes": {d.key: d.nbytes for d in ts.dependencies}})

    def add_replica(self, ts: TaskState, ws: WorkerState) -> None:
        if ws not in ts.who_has:
            self.held_bytes += ts.nbytes
            self.peak_held_bytes = max(self.peak_held_bytes, self.held_bytes)
        ts.who_has.add(ws)
        ws.has_what.add(ts)

    def remove_replica(self, ts: TaskState, ws: WorkerState) -> None:
        if ws in ts.who_has:
            self.held_bytes -= ts.nbytes
        ts.who_has.discard(ws)
        ws.has_what.discard(ts)

    def _settled(self, ts: TaskState) -> None:
        for callback in self.settle_callbacks.pop(ts.key, ()):
            callback()

    def _key_lost(self, ts: TaskState) -> None:
        """The last copy of a key in memory is gone: recompute it if anyone needs it."""
        ts.state = RELEASED
        self.underreplicated.discard(ts)
        if not self._needed(ts):
            self._forget_if_unreferenced(ts)
            return
        self.log_event("key-lost", "", ts.key)
        for dep in ts.dependents:
            if dep.state == WAITING:
                dep.waiting_on.add(ts)
        self._ensure_computed(ts)

    def _release_if_unneeded(self, ts: TaskState) -> None:
        if not self._needed(ts):
            self._release(ts)

    def _release(self, ts: TaskState) -> None:
        """Nobody needs ``ts``: free it everywhere, then maybe forget it entirely."""
        if ts.state == PROCESSING and ts.processing_on is not None:
            ws = ts.processing_on
            ws.processing.discard(ts)
            self.to_worker(ws, {"op": "cancel-compute", "key": ts.key})
            ts.processing_on = None
        if ts.who_has:
            for ws in list(ts.who_has):
                self.remove_replica(ts, ws)
                self.to_worker(ws, {"op": "free-keys", "keys": [ts.key]})
        self.unrunnable.discard(ts)
        self.underreplicated.discard(ts)
        if ts.state != ERRED:
            ts.state = RELEASED
        for dep in list(ts.dependencies):
            if ts in dep.waiters:
                dep.waiters.discard(ts)
                self._release_if_unneeded(dep)
        ts.waiting_on = set()
        self._forget_if_unreferenced(ts)

    def _forget_if_unreferenced(self, ts: TaskState) -> None:
        """Drop a released task with no live dependents; its lineage is needed by no one."""
        if self._needed(ts) or ts.dependents or ts.who_has or ts.state == PROCESSING:
            return
        self.tasks.pop(ts.key, None)
        self._settled(ts)
        for dep in list(ts.dependencies):
            dep.dependents.discard(ts)
            if dep.state in (RELEASED, ERRED) and not self._needed(dep):
                self._forget_if_unreferenced(dep)
            elif dep.state == MEMORY and not self._needed(dep):
                self._release(dep)
        ts.dependencies.clear()

    def _fail(self, ts: TaskState, error: BaseException | None, *,
              source: TaskState | None = None) -> None:
        """Mark ``ts`` erred with ``error`` (or with the error of ``source``)."""
        if source is not None:
            ts.exception, ts.traceback = source.exception, source.traceback
            ts.exception_text = source.exception_text
        else:
            assert error is not None
            ts.exception = cloudpickle.dumps(error)
            ts.traceback = ""
            ts.exception_text = f"{type(error).__name__}: {error}"
        self._unassign(ts)
        ts.state = ERRED
        self.unrunnable.discard(ts)
        self._report_erred(ts, ts.who_wants)
        self._settled(ts)
        self._propagate_error(ts)

    def _propagate_error(self, ts: TaskState) -> None:
        for dep in list(ts.dependents):
            if dep.state in (WAITING, NO_WORKER, QUEUED):
                self._fail(dep, None, source=ts)

    def _report_erred(self, ts: TaskState, client_ids: Iterable[str]) -> None:
        self.to_clients(client_ids, {
            "op": "task-erred-client", "key": ts.key, "exception": ts.exception or b"",
            "traceback": ts.traceback, "text": ts.exception_text})

    # ------------------------------------------------------------------ replication hooks

    def desired_replicas(self, ts: TaskState) -> int:
        base = self.replication_factor if (ts.who_wants or ts.scattered) else 1
        return max(base, ts.replicas_wanted)

    def _check_replication(self, ts: TaskState) -> None:
        replicate_key(self, ts)

    def retry_replication(self) -> None:
        for ts in list(self.underreplicated):
            replicate_key(self, ts)

    # ------------------------------------------------------------------ views

    def task_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(TASK_STATES, 0)
        for ts in self.tasks.values():
            counts[ts.state] += 1
        return counts

    def who_has(self, keys: Iterable[str]) -> dict[str, list[str]]:
        return {
            key: sorted(w.address for w in self.tasks[key].who_has) if key in self.tasks else []
            for key in keys
        }

    def unique_bytes(self, ws: WorkerState) -> int:
        return sum(ts.nbytes for ts in ws.has_what if len(ts.who_has) == 1)


def _merge_frees(msgs: list[Message]) -> list[Message]:
    """Merge runs of adjacent free-keys messages (order across other ops is kept)."""
    out: list[Message] = []
    for msg in msgs:
        if msg["op"] == "free-keys" and out and out[-1]["op"] == "free-keys":
            out[-1] = {"op": "free-keys", "keys": [*out[-1]["keys"], *msg["keys"]]}
        else:
            out.append(msg)
    return out
