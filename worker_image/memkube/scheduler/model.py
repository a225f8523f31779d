"""The scheduler's records: tasks, workers and clients, and nothing that acts on them.

These are plain objects with identity semantics (``eq=False``) so they can live in sets;
the transitions that change them are in :mod:`memkube.scheduler.state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Task states. A task is *released* when nothing needs it (it may still be remembered as
# lineage for a dependent), *waiting* for dependencies, *queued* at the scheduler (root
# tasks, held back so workers are not flooded), *processing* on one worker, in *memory*
# on one or more workers, or *erred*.
RELEASED = "released"
WAITING = "waiting"
QUEUED = "queued"
NO_WORKER = "no-worker"
PROCESSING = "processing"
MEMORY = "memory"
ERRED = "erred"
TASK_STATES = (RELEASED, WAITING, QUEUED, NO_WORKER, PROCESSING, MEMORY, ERRED)

# Worker statuses.
RUNNING = "running"
PAUSED = "paused"
RETIRING = "retiring"


@dataclass(eq=False, slots=True)
class TaskState:
    key: str
    run_spec: bytes | None  # None: scattered data, which has no lineage
    priority: tuple[int, ...] = ()
    state: str = RELEASED
    dependencies: set[TaskState] = field(default_factory=set)
    dependents: set[TaskState] = field(default_factory=set)
    waiting_on: set[TaskState] = field(default_factory=set)  # dependencies not yet in memory
    waiters: set[TaskState] = field(default_factory=set)  # unfinished dependents needing this
    who_wants: set[str] = field(default_factory=set)  # client ids holding a future
    who_has: set[WorkerState] = field(default_factory=set)
    replicating_to: set[WorkerState] = field(default_factory=set)
    processing_on: WorkerState | None = None
    nbytes: int = 0
    type: str = ""
    exception: bytes | None = None
    traceback: str = ""
    exception_text: str = ""
    suspicious: int = 0  # times a worker died while running it
    runs: int = 0  # times it was computed to completion (recomputations are runs > 1)
    replicas_wanted: int = 1  # raised by client.replicate(n=)
    fetch_failures: int = 0  # peers failing to serve it (see SchedulerState.missing_data)
    owner: str = ""  # the client that created it: queued root tasks are served per owner

    @property
    def scattered(self) -> bool:
        return self.run_spec is None

    def __repr__(self) -> str:
        return f"<Task {self.key!r} {self.state}>"


@dataclass(eq=False, slots=True)
class WorkerState:
    address: str
    name: str
    nthreads: int
    host: str = ""
    node: str = ""
    pid: int = 0
    status: str = RUNNING
    processing: set[TaskState] = field(default_factory=set)
    has_what: set[TaskState] = field(default_factory=set)
    memory: dict[str, Any] = field(default_factory=dict)  # latest memory figures
    executing: int = 0
    ready: int = 0
    last_seen: float = 0.0
    memory_restarts: int = 0

    @property
    def nbytes(self) -> int:
        return sum(ts.nbytes for ts in self.has_what)

    @property
    def limit(self) -> int | None:
        value = self.memory.get("limit")
        return int(value) if value else None

    def memory_fraction(self) -> float:
        """Managed plus unmanaged memory as a fraction of the limit (0 without a limit)."""
        limit = self.limit
        if not limit:
            return 0.0
        used = max(self.nbytes, int(self.memory.get("managed", 0))) + int(
            self.memory.get("unmanaged", 0)
        )
        return used / limit

    def below_target(self) -> bool:
        target = (self.memory.get("thresholds") or {}).get("target")
        if not self.limit or target is None:
            return True
        return self.memory_fraction() < float(target)

    def __repr__(self) -> str:
        return f"<Worker {self.name} {self.address} {self.status}>"


@dataclass(eq=False, slots=True)
class ClientState:
    id: str
    wants: set[TaskState] = field(default_factory=set)
    connected: bool = True
