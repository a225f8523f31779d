"""The scheduler as a state machine: events in, messages out, no I/O.

Every stimulus (a client's graph, a worker's finished task, a lost worker) is a method call
that updates :mod:`~memkube.scheduler.model` records and queues messages for workers and
clients; the aiohttp shell (:mod:`memkube.scheduler.server`) delivers them with
:meth:`SchedulerCore.drain`. Unit tests drive this class directly and assert on the
messages, with no sockets and no sleeps.

Covered here: task lifecycle, placement, root-task queuing, data lifetime (reference
counting by clients and dependents), recovery after a worker is lost. Replication and
retirement policies live in :mod:`.replication` and :mod:`.retire` and act through the
same queues.
"""


from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import DataLostError, KilledWorkerError, ProtocolError
from .core import SchedulerCore
from .model import (
    ERRED,
    MEMORY,
    PROCESSING,
    RELEASED,
    RETIRING,
    RUNNING,
    WAITING,
    ClientState,
    TaskState,
    WorkerState,
)
from .replication import drop_surplus_replicas
from .retire import progress_retirements


class SchedulerState(SchedulerCore):
    """All scheduling decisions: the events, on top of :class:`SchedulerCore`."""

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

        Each task is ``{"key", "run_spec", "deps", "priority"}`` (checked by
        :mod:`memkube.protocol`); a key that already exists is reused as it is (pure calls
        deduplicate; its dependencies stay its own). The graph is checked whole before
        anything changes: a cycle raises :class:`~memkube.errors.ProtocolError` naming a key
        on it, and the state is left as it was. New tasks that nothing wants or depends on
        are forgotten at once.
        """
        created = self.add_tasks(client_id, tasks)
        self.client_wants(client_id, wants)
        self.forget_unwanted(created)

    def add_tasks(self, client_id: str, tasks: list[dict[str, Any]]) -> list[TaskState]:
        """The first half of :meth:`update_graph`: check and create the tasks, want none.

        Returns the tasks created; hand them to :meth:`forget_unwanted` once the client's
        wants are in (the shell adds large wants in chunks, letting others in between).
        """
        fresh: dict[str, dict[str, Any]] = {}
        for spec in tasks:
            key = spec["key"]
            ts = self.tasks.get(key)
            if key not in fresh and (ts is None or (
                    ts.run_spec is None and not ts.who_has and not ts.dependents)):
                fresh[key] = spec
        _check_acyclic(fresh)
        self.add_client(client_id)
        created = []
        for key, spec in fresh.items():
            ts = self.tasks.get(key)
            if ts is None:
                ts = TaskState(key, spec["run_spec"], tuple(spec.get("priority") or ()),
                               owner=client_id)
                self.tasks[key] = ts
            else:  # a key whose data was lost and that could not be recomputed, until now
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
        return [ts for ts, _ in created]

    def forget_unwanted(self, created: list[TaskState]) -> None:
        """Forget tasks of a graph that nothing wants or depends on."""
        for ts in created:
            if ts.state == RELEASED and self.tasks.get(ts.key) is ts:
                self._forget_if_unreferenced(ts)

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
        memory_kill: dict[str, Any] | None = None,
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
        if memory_kill:  # its predecessor was stopped by the memory guard: learn first
            self.memory_killed(name, memory_kill)
        self._retry_unrunnable()
        self._fill_workers()
        self.retry_replication()
        return ws

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
        lost = []
        for ts in list(ws.has_what):
            self.remove_replica(ts, ws)
            if ts.state == MEMORY and not ts.who_has:
                lost.append(ts)
            elif ts.state == MEMORY:
                self._check_replication(ts)
        self._keys_lost(lost)
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
        if self.retirements:
            # Keys left unplaced for want of room, and copies a receiver failed to fetch
            # (lost-keys), are placed again as the figures change: once a heartbeat.
            progress_retirements(self)

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

    def memory_restart(self, address: str, reason: str,
                       report: dict[str, Any] | None = None) -> None:
        ws = self.workers.get(address)
        if ws is not None:
            ws.memory_restarts += 1
            self.restarts_by_name[ws.name] += 1
            self.log_event("memory-restart", ws.name, reason)
            if report and report.get("keys"):
                self.memory_fit.killed(self, {**report, "reason": reason}, ws.name)

    def memory_killed(self, name: str, report: dict[str, Any]) -> None:
        """The memory guard of worker ``name`` killed it while ``report["keys"]`` ran."""
        self.restarts_by_name[name] += 1
        ws = next((w for w in self.workers.values() if w.name == name), None)
        if ws is not None:
            ws.memory_restarts = self.restarts_by_name[name]
        self.log_event("memory-restart", name, str(report.get("reason", "")))
        self.memory_fit.killed(self, report, name)
        self._fill_workers()

    def cannot_fit(self, address: str, key: str, peak: int, limit: int, reason: str) -> None:
        """The worker will not start ``key``: its expected peak is above its terminate line."""
        ws = self.workers.get(address)
        ts = self.tasks.get(key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        if self.memory_fit.cannot_fit(self, ts, peak, limit, reason):
            return
        self._unassign(ts)  # another worker is larger: place it there
        ts.state = RELEASED
        if self._needed(ts):
            self._ensure_computed(ts)

    def stale_workers(self, timeout: float) -> list[str]:
        now = self.clock()
        return [w.address for w in self.workers.values() if now - w.last_seen > timeout]

    # ------------------------------------------------------------------ task results

    def task_finished(self, address: str, key: str, nbytes: int, type_: str,
                      duration: float = 0.0, peak: int | None = None, *,
                      value: bytes | None = None) -> None:
        """``value``: the result's frames (small ones come inline), passed on to the clients
        that want the key now and not kept here."""
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
            self.avg_result_bytes = 0.9 * self.avg_result_bytes + 0.1 * nbytes
        if ts.state == PROCESSING:
            ws.processing.discard(ts)
            ts.processing_on = None
            ts.state = MEMORY
            ts.runs += 1
            self.memory_fit.finished(ts, peak)
        ts.nbytes, ts.type = nbytes, type_
        self.add_replica(ts, ws)
        msg: dict[str, Any] = {"op": "key-in-memory", "key": key, "type": type_}
        if value is not None and ts.who_wants:
            msg["value"] = value
            self.inlined_bytes += len(value) * len(ts.who_wants)
        self.to_clients(ts.who_wants, msg)
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


def _check_acyclic(specs: dict[str, dict[str, Any]]) -> None:
    """Raise ProtocolError if the new tasks ``specs`` depend on each other in a cycle.

    Only new tasks get dependencies (an existing key keeps its own), so a cycle can only
    run through them. Iterative: graphs of any depth.
    """
    done: set[str] = set()
    on_path: set[str] = set()
    for start in specs:
        if start in done:
            continue
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            key, leaving = stack.pop()
            if leaving:
                on_path.discard(key)
                done.add(key)
                continue
            if key in done:
                continue
            on_path.add(key)
            stack.append((key, True))
            for dep in specs[key].get("deps") or ():
                if dep in on_path:
                    raise ProtocolError(
                        f"update-graph: the tasks have a cycle through key {dep[:200]!r}")
                if dep in specs and dep not in done:
                    stack.append((dep, False))
