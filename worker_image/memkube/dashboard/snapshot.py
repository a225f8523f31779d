"""The shapes the dashboard, the metrics and the memory report read.

These mirror the "Memory figures" and the ``GET /api/v1/pool`` snapshot fixed in
``docs/internals.md``. The scheduler produces them; this package only reads them, and reads
defensively (``.get`` with a default) so that a field added or missing on one side of the
seam never breaks a page or a scrape.

Not covered: producing a snapshot (the scheduler's job) or validating one.
"""

from __future__ import annotations

from typing import Literal, TypedDict

# The memory figures are defined once, by their producer.
from ..memory.manager import MemoryFigures

WorkerState = Literal["normal", "spilling", "paused"]
WorkerStatus = Literal["running", "paused", "retiring"]
# The kinds in docs/internals.md, plus those the scheduler also reports; the page shows any
# other kind too, in a neutral colour.
EventKind = Literal[
    "pause", "resume", "memory-restart", "retire", "worker-lost", "oom-kill", "worker-added",
    "retiring", "worker-retired", "key-lost",
]

THRESHOLD_NAMES: tuple[str, ...] = ("target", "spill", "pause", "terminate")
MEMORY_TYPES: tuple[str, ...] = ("managed", "unmanaged", "spilled")


class WorkerTasks(TypedDict):
    executing: int
    ready: int


class WorkerInfo(TypedDict):
    """One worker as the scheduler sees it."""

    name: str
    address: str
    host: str
    node: str | None
    pid: int
    nthreads: int
    status: WorkerStatus
    memory: MemoryFigures
    memory_restarts: int
    tasks: WorkerTasks
    keys: int
    last_seen: float


class SchedulerInfo(TypedDict):
    address: str
    dashboard: str
    started: float


class PoolMemory(TypedDict):
    limit: int
    managed: int
    unmanaged: int
    spilled: int


class Replication(TypedDict):
    factor: int
    shortfall: int


class PoolEvent(TypedDict):
    """A memory event for the timeline: ``time`` is seconds since the epoch."""

    time: float
    kind: EventKind
    worker: str
    message: str


class PoolSnapshot(TypedDict):
    """``GET /api/v1/pool``: everything the scheduler knows about the pool's memory."""

    scheduler: SchedulerInfo
    workers: list[WorkerInfo]
    memory: PoolMemory
    tasks: dict[str, int]
    replication: Replication
    events: list[PoolEvent]


class WorkerExtra(TypedDict, total=False):
    """What a worker adds to its own ``/metrics`` besides its memory figures."""

    nthreads: int
    tasks: WorkerTasks
    keys: int
    memory_restarts: int
    status: WorkerStatus
