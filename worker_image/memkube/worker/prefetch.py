"""Unspilling the inputs of the tasks about to start, before they start.

The worker's state machine hands over its next ready tasks in priority order
(``WorkerState.upcoming``); :class:`Prefetcher` looks at the first ``depth`` of them and asks the memory manager (in one of the worker's I/O threads, one
job at a time) to read their spilled inputs back, in priority order and only while the
memory policy allows (:meth:`memkube.memory.WorkerMemory.prefetch`). The task thread then
finds them in memory instead of waiting for the disk. Not covered: fetching inputs held by
other workers (``worker.py``); deciding what fits (the memory manager).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import Any, Protocol

log = logging.getLogger(__name__)


class _Memory(Protocol):
    def prefetch(self, wanted: dict[str, int]) -> list[str]: ...


class Prefetcher:
    """Reads ahead the spilled inputs of the next ``depth`` ready tasks."""

    def __init__(self, memory: _Memory, executor: Executor, depth: int = 2) -> None:
        self.memory, self.executor, self.depth = memory, executor, depth
        self._job: Future[list[str]] | None = None
        self.read = 0  # values read ahead so far (a figure for tests and benchmarks)

    def ahead(self, upcoming: Sequence[Any]) -> None:
        """Look at the next ready tasks, in priority order; start a job if idle."""
        if self.depth <= 0 or not upcoming or (self._job is not None and not self._job.done()):
            return
        wanted: dict[str, int] = {}
        live = [t for t in upcoming if not t.cancelled]
        for task in live[: self.depth]:
            for key in task.who_has:
                wanted.setdefault(key, int(task.nbytes.get(key, 0)))
        if wanted:
            try:
                self._job = self.executor.submit(self.memory.prefetch, wanted)
            except RuntimeError:  # the executor is shut down: the worker is closing
                return
            self._job.add_done_callback(self._done)

    def _done(self, job: Future[list[str]]) -> None:
        exc = job.exception()
        if exc is not None:
            log.warning("reading ahead failed: %r", exc)
        else:
            self.read += len(job.result())
