"""The worker as a state machine: stimuli in, instructions out, no I/O.

The aiohttp shell (:mod:`memkube.worker.worker`) turns what happens — a scheduler message,
a finished fetch, a finished task, a memory event — into a method call here and carries out
the instructions returned, in order. Tests drive this class directly and compare the
instructions, with no sockets, threads or sleeps.

Life of a task: ``compute-task`` -> (missing inputs) :class:`Fetch`, deduplicated across
tasks -> ready heap by priority -> admission (:mod:`.admission`: does its expected peak fit
the room?) -> :class:`Execute` -> ``task_done`` -> :class:`Send` of the report. A fetch or
store that fails fails the tasks waiting on it (``missing-data``), never leaves them waiting.
A memory restart is one instruction, :class:`Restart`, that the shell carries out at once.

What the state asks of the world it gets from two injected callables: ``holds(key)`` (is the
value here) and ``room()`` (a :class:`~.admission.Room` reading of memory).

Not covered: running tasks, moving bytes and the memory monitor (the shell and
``memkube.memory``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import Message
from .admission import Admission, Admit, Room, prefix_of

FETCHING, READY, EXECUTING = "fetching", "ready", "executing"


@dataclass(eq=False)
class WorkerTask:
    key: str
    run_spec: bytes
    who_has: dict[str, list[str]]
    priority: tuple[Any, ...]
    nbytes: dict[str, int] = field(default_factory=dict)
    expected_peak: int | None = None  # from the scheduler's prefix statistics
    alone: bool = False  # killed for memory before: run with nothing else, all spilled
    inline: bool = False  # a client waits for it: send a small result with task-finished
    state: str = FETCHING
    cancelled: bool = False
    waiting_on: set[str] = field(default_factory=set)

    @property
    def prefix(self) -> str:
        return prefix_of(self.key)


# ---------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class Send:
    msg: Message


@dataclass(frozen=True)
class Fetch:
    """Fetch these keys from their holders and store them; report with ``fetch_done``.

    ``nbytes``: each key's size as the scheduler knows it (0 or absent: unknown), which
    the shell uses to fetch in batches that fit its memory (:mod:`.intake`)."""

    who_has: dict[str, list[str]]
    nbytes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Execute:
    key: str


@dataclass(frozen=True)
class Free:
    keys: list[str]


@dataclass(frozen=True)
class SpillFirst:
    """Spill at least ``nbytes`` before the next start; report with ``spilled``."""

    nbytes: int


@dataclass(frozen=True)
class Restart:
    """Exit now for the supervisor to restart this worker (the report is already sent)."""

    reason: str


Instruction = Send | Fetch | Execute | Free | SpillFirst | Restart


class WorkerState:
    """All of the worker's decisions; see the module docstring."""

    def __init__(
        self,
        nthreads: int,
        *,
        holds: Callable[[str], bool],
        room: Callable[[], Room],
        address: str = "",
    ) -> None:
        self.nthreads = max(1, nthreads)
        self.holds = holds
        self.room = room
        self.address = address
        self.tasks: dict[str, WorkerTask] = {}
        self.executing: dict[str, WorkerTask] = {}
        self.paused = False
        self.restarting = False
        self.admission = Admission()
        self._ready: list[tuple[tuple[Any, ...], int, WorkerTask]] = []
        self._seq = itertools.count()
        self._inflight: dict[str, set[str]] = {}  # key being fetched -> tasks waiting on it
        self._spilling = False
        self._deferred: dict[str, list[str]] = {}  # fetches held back while paused
        self._sizes: dict[str, int] = {}  # expected bytes of keys being fetched

    @property
    def ready_count(self) -> int:
        return sum(1 for _, _, wt in self._ready if not wt.cancelled)

    def upcoming(self, n: int) -> list[WorkerTask]:
        """The next ``n`` ready tasks, in the order they would start (for reading ahead)."""
        live = [wt for _, _, wt in heapq.nsmallest(4 * n, self._ready) if not wt.cancelled]
        return live[:n]

    # ------------------------------------------------------------------ scheduler messages

    def handle(self, msg: Message) -> list[Instruction]:
        op = msg["op"]
        if op == "compute-task":
            return self.compute_task(msg)
        if op == "free-keys":
            return self.free_keys([str(k) for k in msg["keys"]])
        if op == "cancel-compute":
            self._cancel(str(msg["key"]))
            return []
        if op == "acquire-replicas":
            return self.acquire_replicas(
                {str(k): list(v) for k, v in msg["who_has"].items()},
                {str(k): int(v) for k, v in (msg.get("nbytes") or {}).items()})
        return []

    def compute_task(self, msg: Message) -> list[Instruction]:
        peak = msg.get("peak")
        wt = WorkerTask(
            str(msg["key"]), bytes(msg["run_spec"]),
            {str(k): list(v) for k, v in msg["who_has"].items()},
            tuple(msg["priority"]), {str(k): int(v) for k, v in (msg.get("nbytes") or {}).items()},
            expected_peak=int(peak) if isinstance(peak, int) else None,
            alone=msg.get("alone") is True,
            inline=msg.get("inline") is True,
        )
        if wt.expected_peak is not None:
            self.admission.learn(wt.prefix, wt.expected_peak)
        old = self.tasks.get(wt.key)
        if old is not None:
            old.cancelled = True
        self.tasks[wt.key] = wt
        missing = [k for k in wt.who_has if not self.holds(k)]
        if not missing:
            return self._queue(wt)
        wt.waiting_on = set(missing)
        todo: dict[str, list[str]] = {}
        for key in missing:
            if key not in self._inflight:
                self._inflight[key] = set()
                todo[key] = wt.who_has[key]
                self._sizes[key] = wt.nbytes.get(key, 0)
            self._inflight[key].add(wt.key)
        return self._fetch(todo) if todo else []

    def acquire_replicas(self, who_has: dict[str, list[str]],
                         nbytes: dict[str, int] | None = None) -> list[Instruction]:
        """Copy keys from peers (replication, retirement); failures become ``lost-keys``."""
        held = {k: 0 for k in who_has if self.holds(k)}
        out: list[Instruction] = [Send({"op": "add-keys", "keys": held})] if held else []
        todo = {}
        for key, holders in who_has.items():
            if key not in held and key not in self._inflight:
                self._inflight[key] = set()
                todo[key] = holders
                self._sizes[key] = (nbytes or {}).get(key, 0)
        if todo:
            out.extend(self._fetch(todo))
        return out

    def _fetch(self, todo: dict[str, list[str]]) -> list[Instruction]:
        if self.paused:  # paused: accept no incoming transfer until resumed
            self._deferred.update(todo)
            return []
        return [Fetch(todo, {k: self._sizes.get(k, 0) for k in todo})]

    def free_keys(self, keys: list[str]) -> list[Instruction]:
        for key in keys:
            self._cancel(key)
        return [Free(keys)]

    def _cancel(self, key: str) -> None:
        wt = self.tasks.pop(key, None)
        if wt is not None:
            wt.cancelled = True

    # ------------------------------------------------------------------ fetches

    def fetch_done(self, fetched: dict[str, int], failed: Iterable[str] = (),
                   error: str = "", deferred: dict[str, list[str]] | None = None,
                   ) -> list[Instruction]:
        """(Part of) a :class:`Fetch` ended: ``fetched`` keys are stored, ``failed`` could
        not be had (no holder served them, or storing failed with ``error``), ``deferred``
        were not fetched because the worker paused: they are fetched once it resumes.

        The shell reports each batch as it is stored, so the scheduler learns of copies
        (and a retirement progresses) while the rest is still coming."""
        out: list[Instruction] = []
        for key in fetched:
            self._sizes.pop(key, None)
        for key in failed:
            self._sizes.pop(key, None)
        if fetched:
            out.append(Send({"op": "add-keys", "keys": dict(fetched)}))
        for key in fetched:
            for task_key in self._inflight.pop(key, set()):
                wt = self.tasks.get(task_key)
                if wt is not None and not wt.cancelled:
                    wt.waiting_on.discard(key)
                    if not wt.waiting_on and wt.state == FETCHING:
                        out.extend(self._queue(wt))
        for key in failed:
            waiting = self._inflight.pop(key, set())
            if not waiting:  # a replica fetch (acquire-replicas): say it failed
                out.append(Send({"op": "lost-keys", "keys": [key]}))
            for task_key in waiting:
                wt = self.tasks.get(task_key)
                if wt is None or wt.cancelled or wt.state != FETCHING:
                    continue
                del self.tasks[task_key]
                wt.cancelled = True
                holders = wt.who_has.get(key, [])
                out.append(Send({"op": "missing-data", "key": task_key, "dep": key,
                                 "worker": ",".join(holders), "error": error}))
        if deferred:
            live = {k: v for k, v in deferred.items() if k in self._inflight}
            if self.paused:
                self._deferred.update(live)
            elif live:
                out.extend(self._fetch(live))
        return out

    # ------------------------------------------------------------------ execution

    def _queue(self, wt: WorkerTask) -> list[Instruction]:
        wt.state = READY
        heapq.heappush(self._ready, (wt.priority, next(self._seq), wt))
        return self.start_ready()

    def start_ready(self) -> list[Instruction]:
        """Start what may start now: free threads, not paused, and admitted by memory."""
        out: list[Instruction] = []
        while (self._ready and len(self.executing) < self.nthreads and not self.paused
               and not self.restarting and not self._spilling):
            _, _, wt = self._ready[0]
            if wt.cancelled:
                heapq.heappop(self._ready)
                continue
            running = [t.prefix for t in self.executing.values()]
            decision = self.admission.decide(
                wt.prefix, wt.expected_peak, sum(wt.nbytes.values()), running, self.room(),
                alone=wt.alone)
            if decision.admit is Admit.WAIT:
                break  # the best task waits for running ones; lower ones do not overtake it
            heapq.heappop(self._ready)
            if decision.admit is Admit.SPILL_FIRST:
                heapq.heappush(self._ready, (wt.priority, next(self._seq), wt))
                self._spilling = True
                out.append(SpillFirst(decision.spill))
                break
            if decision.admit is Admit.NEVER:
                del self.tasks[wt.key]
                wt.cancelled = True
                out.append(Send({"op": "cannot-fit", "key": wt.key, "peak": decision.peak,
                                 "limit": decision.limit, "reason": decision.reason}))
                continue
            wt.state = EXECUTING
            self.executing[wt.key] = wt
            out.append(Execute(wt.key))
        return out

    def spilled(self) -> list[Instruction]:
        """A :class:`SpillFirst` is done (whatever it managed to free)."""
        self._spilling = False
        self.admission.spilled_for_next()
        return self.start_ready()

    def task_done(self, key: str, report: Message, peak: int | None = None, *,
                  start: bool = True) -> list[Instruction]:
        """A task thread ended with ``report`` (task-finished, task-erred, missing-data);
        ``peak`` is the memory it added at most, measured by the shell. ``start=False``:
        the shell starts the next tasks itself once memory has settled."""
        wt = self.executing.pop(key, None)
        if wt is None:
            return []
        out: list[Instruction] = []
        if peak is not None and report["op"] == "task-finished":
            self.admission.learn(wt.prefix, peak)
            report = {**report, "peak": peak}
        if self.tasks.get(key) is wt:
            del self.tasks[key]
            out.append(Send(report))
        elif report["op"] == "task-finished":
            out.append(Free([key]))  # cancelled while running: the result is not wanted
        if start and not self.restarting:
            out.extend(self.start_ready())
        return out

    def running_keys(self) -> list[str]:
        return list(self.executing)

    # ------------------------------------------------------------------ memory and links

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> list[Instruction]:
        self.paused = False
        out: list[Instruction] = []
        if self._deferred:
            out.append(Fetch(self._deferred, {k: self._sizes.get(k, 0) for k in self._deferred}))
            self._deferred = {}
        return out + self.start_ready()

    def memory_restart(self, reason: str, peak: int | None = None,
                       task_peak: int | None = None) -> list[Instruction]:
        """Memory stayed above the terminate line with nothing left to spill: restart now.

        The scheduler learns which tasks were running and the peak, so it can fail a task
        that can never fit instead of retrying it forever.
        """
        if self.restarting:
            return []
        self.restarting = True
        msg: Message = {"op": "memory-restart", "reason": reason, "keys": self.running_keys()}
        if peak is not None:
            msg["peak"] = peak
        if task_peak is not None:
            msg["task_peak"] = task_peak
        return [Send(msg), Restart(reason)]

    def scheduler_lost(self) -> None:
        """The scheduler is gone: it will hand out its tasks again; forget ours."""
        for wt in self.tasks.values():
            wt.cancelled = True
        self.tasks.clear()
        self._ready.clear()
        self._inflight.clear()
        self._deferred.clear()
        self._sizes.clear()
        self._spilling = False
