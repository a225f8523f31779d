"""The scheduler's state and the transitions every event handler shares; no I/O.

:class:`SchedulerCore` holds the records (tasks, workers, clients), the outboxes the shell
drains, and the transitions between task states: computing what is needed, placing and
queuing work, freeing what nobody needs, failing what cannot be computed. The events
(a client's graph, a worker's result, a lost worker) are in :mod:`.state`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from typing import Any

import cloudpickle

from ..errors import DataLostError
from ..protocol import INLINE_LIMIT, Message
from .memfit import MemoryFit
from .model import (
    ERRED,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    RUNNING,
    TASK_STATES,
    WAITING,
    ClientState,
    TaskState,
    WorkerState,
)
from .replication import replicate_key
from .scatter import ScatterGrants

#: Work, in seconds of recent average task duration, kept queued on a worker per thread
#: when tasks are tiny (:meth:`SchedulerCore._tiny_task_depth`), at most MAX_TINY_DEPTH
#: tasks; and the average result size above which no extra depth is given (the size of a
#: result that comes inline: one notion of "small result").
QUEUED_SECONDS = 0.002
MAX_TINY_DEPTH = 8
TINY_RESULT = INLINE_LIMIT


class SchedulerCore:
    """Records, outboxes and task transitions; see the module docstring."""

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
        # Queued root tasks, one heap per owning client, served in turns (see _fill_workers).
        self._queues: dict[str, list[tuple[tuple[int, ...], int, TaskState]]] = {}
        self._turns: deque[str] = deque()
        self._seq = itertools.count()
        self.unrunnable: set[TaskState] = set()  # ready but no worker can take them
        self.underreplicated: set[TaskState] = set()
        self.events: list[dict[str, Any]] = []  # memory and lifecycle events for the timeline
        self._outbox_workers: dict[str, list[Message]] = defaultdict(list)
        self._outbox_clients: dict[str, list[Message]] = defaultdict(list)
        self.retirements: list[Any] = []  # active retire.Retirement objects
        self.avg_task_seconds = 0.005
        self.avg_result_bytes = 0.0  # moving average of results' sizes (with the duration)
        self.restarts_by_name: dict[str, int] = defaultdict(int)  # memory restarts
        # Callbacks run once when a key next settles (in memory, erred or forgotten); the
        # shell uses them to wait for recomputations, e.g. a gather during recovery.
        self.settle_callbacks: dict[str, list[Any]] = defaultdict(list)
        self.held_bytes = 0  # bytes of results on workers, replicas included
        self.peak_held_bytes = 0
        self.inlined_bytes = 0  # small results passed on to clients in key-in-memory
        self.memory_fit = MemoryFit()  # per-prefix peaks and memory kills (memfit.py)
        self.grants = ScatterGrants()  # direct scatters under way (scatter.py)

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

    def workers_available(self) -> None:
        """Workers can take work again (resumed, or a retirement was given up)."""
        self._retry_unrunnable()
        self._fill_workers()

    def _retry_unrunnable(self) -> None:
        """Place tasks that were ready when no worker could run them (none, or all paused)."""
        for ts in list(self.unrunnable):
            self.unrunnable.discard(ts)
            if ts.state == NO_WORKER:
                ts.state = RELEASED
                self._make_ready(ts)

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
        _drive(self._ensure_steps(ts))

    def _ensure_steps(self, ts: TaskState) -> Steps:
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
            yield self._ensure_steps(dep)
            if ts.state != WAITING:  # a dependency failed and failed us
                return
        if not ts.waiting_on:
            self._make_ready(ts)

    def _make_ready(self, ts: TaskState) -> None:
        ts.waiting_on = set()
        if not ts.dependencies:
            ts.state = QUEUED
            heap = self._queues.get(ts.owner)
            if heap is None:
                heap = self._queues[ts.owner] = []
                self._turns.append(ts.owner)
            heapq.heappush(heap, (ts.priority, next(self._seq), ts))
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
        candidates = self.memory_fit.prefer_fitting(ts, candidates)
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
        return max(1, math.ceil(ws.nthreads * self.worker_saturation),
                   ws.nthreads * self._tiny_task_depth())

    def _tiny_task_depth(self) -> int:
        """Tasks per thread to keep on a worker when recent tasks are tiny: with two, a
        no-op's thread waits for the scheduler's answer after each task (a round trip
        is ~1 ms); enough to cover :data:`QUEUED_SECONDS` of work keeps it busy. Only for
        small results, so memory cannot pile up on a worker ahead of its reductions; and
        tasks of a millisecond or more get no extra depth, so another client's task never
        waits behind more than ~QUEUED_SECONDS of them."""
        if self.avg_result_bytes > TINY_RESULT or self.avg_task_seconds <= 0:
            return 0
        return min(MAX_TINY_DEPTH, int(QUEUED_SECONDS / self.avg_task_seconds))

    def _fill_workers(self) -> None:
        """Hand queued root tasks to running workers with free slots.

        Fair between clients: each client that has queued tasks gets one slot in turn,
        so one client's 50,000 tasks do not make another's single task wait behind them;
        within a client, best priority first. (Priorities of different clients come
        from different counters and are not compared.)
        """
        if not self._turns:
            return
        open_workers = [w for w in self.workers.values()
                        if w.status == RUNNING and len(w.processing) < self._slots(w)]
        while self._turns and open_workers:
            owner = self._turns[0]
            heap = self._queues[owner]
            ts = None
            while heap:
                _, _, candidate = heapq.heappop(heap)
                if candidate.state == QUEUED:  # else released or cancelled since queued
                    ts = candidate
                    break
            if heap:
                self._turns.rotate(-1)
            else:
                del self._queues[owner]
                self._turns.popleft()
            if ts is None:
                continue
            ws = min(self.memory_fit.prefer_fitting(ts, open_workers),
                     key=lambda w: len(w.processing) / w.nthreads)
            self._send_compute(ts, ws)
            if len(ws.processing) >= self._slots(ws):
                open_workers.remove(ws)

    def _send_compute(self, ts: TaskState, ws: WorkerState) -> None:
        assert ts.run_spec is not None
        ts.state = PROCESSING
        ts.processing_on = ws
        ws.processing.add(ts)
        who_has = {dep.key: [w.address for w in dep.who_has] for dep in ts.dependencies}
        msg: Message = {"op": "compute-task", "key": ts.key, "run_spec": ts.run_spec,
               "who_has": who_has, "priority": list(ts.priority),
               "nbytes": {d.key: d.nbytes for d in ts.dependencies}}
        peak = self.memory_fit.expected(ts.key)
        if peak is not None:
            msg["peak"] = peak
        if ts.who_wants:
            msg["inline"] = True  # a client waits for it: a small result comes back inline
        if self.memory_fit.kills.get(ts.key):
            msg["alone"] = True  # killed for memory before: run it alone, all spilled
        self.to_worker(ws, msg)

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
        self._keys_lost([ts])

    def _keys_lost(self, lost: list[TaskState]) -> None:
        """Keys whose last copies are gone together (a worker died): all are marked lost
        before any is recomputed, so no dependent is placed on a copy that is gone too."""
        for ts in lost:
            ts.state = RELEASED
            self.underreplicated.discard(ts)
            for dep in ts.dependents:
                if dep.state == WAITING:
                    dep.waiting_on.add(ts)
        for ts in lost:
            if ts.state != RELEASED or ts.key not in self.tasks:
                continue  # recomputing already (an earlier one needed it), or forgotten
            if not self._needed(ts):
                self._forget_if_unreferenced(ts)
                continue
            self.log_event("key-lost", "", ts.key)
            self._ensure_computed(ts)

    def _release_if_unneeded(self, ts: TaskState) -> None:
        if not self._needed(ts):
            _drive(self._release_steps(ts))

    def _release(self, ts: TaskState) -> None:
        """Nobody needs ``ts``: free it everywhere, then maybe forget it entirely."""
        _drive(self._release_steps(ts))

    def _release_steps(self, ts: TaskState) -> Steps:
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
                if not self._needed(dep):
                    yield self._release_steps(dep)
        ts.waiting_on = set()
        yield self._forget_steps(ts)

    def _forget_if_unreferenced(self, ts: TaskState) -> None:
        """Drop a released task with no live dependents; its lineage is needed by no one."""
        _drive(self._forget_steps(ts))

    def _forget_steps(self, ts: TaskState) -> Steps:
        if self._needed(ts) or ts.dependents or ts.who_has or ts.state == PROCESSING:
            return
        self.tasks.pop(ts.key, None)
        self._settled(ts)
        for dep in list(ts.dependencies):
            dep.dependents.discard(ts)
            if dep.state in (RELEASED, ERRED) and not self._needed(dep):
                yield self._forget_steps(dep)
            elif dep.state == MEMORY and not self._needed(dep):
                yield self._release_steps(dep)
        ts.dependencies.clear()

    def _fail(self, ts: TaskState, error: BaseException | None, *,
              source: TaskState | None = None) -> None:
        """Mark ``ts`` erred with ``error`` (or with the error of ``source``), and every
        dependent waiting for it with the same error."""
        if source is not None:
            ts.exception, ts.traceback = source.exception, source.traceback
            ts.exception_text = source.exception_text
        else:
            assert error is not None
            ts.exception = cloudpickle.dumps(error)
            ts.traceback = ""
            ts.exception_text = f"{type(error).__name__}: {error}"
        _drive(self._fail_steps(ts))

    def _fail_steps(self, ts: TaskState) -> Steps:
        self._unassign(ts)
        ts.state = ERRED
        self.unrunnable.discard(ts)
        self._report_erred(ts, ts.who_wants)
        self._settled(ts)
        yield self._propagate_steps(ts)

    def _propagate_error(self, ts: TaskState) -> None:
        _drive(self._propagate_steps(ts))

    def _propagate_steps(self, ts: TaskState) -> Steps:
        for dep in list(ts.dependents):
            if dep.state in (WAITING, NO_WORKER, QUEUED):
                dep.exception, dep.traceback = ts.exception, ts.traceback
                dep.exception_text = ts.exception_text
                yield self._fail_steps(dep)

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


#: A transition written as a generator: it yields the sub-transitions it would have called
#: recursively, and :func:`_drive` runs them from an explicit stack, so a walk over a graph
#: of any depth never reaches Python's recursion limit.
Steps = Iterator["Steps"]


def _drive(steps: Steps) -> None:
    """Run a transition and every sub-transition it yields, depth first, in call order."""
    stack = [steps]
    while stack:
        try:
            sub = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        stack.append(sub)


def _merge_frees(msgs: list[Message]) -> list[Message]:
    """Merge runs of adjacent free-keys messages (order across other ops is kept)."""
    out: list[Message] = []
    for msg in msgs:
        if msg["op"] == "free-keys" and out and out[-1]["op"] == "free-keys":
            out[-1] = {"op": "free-keys", "keys": [*out[-1]["keys"], *msg["keys"]]}
        else:
            out.append(msg)
    return out
