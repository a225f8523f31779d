"""Memory-aware admission: does a task's expected peak fit the room the worker has?

Each task prefix (the function name part of a key, as Dask groups tasks) has an expected
peak: the most memory a finished task of that prefix added while it ran (measured by the
shell from the kernel's high-water mark), or what the scheduler's statistics say. Before a
task starts, :meth:`Admission.decide` compares it with the room (terminate line minus what
the worker uses, plus what it could spill):

- fits now (next to the expected peaks of the running tasks): run; fits only after spilling and nothing else runs: spill first, then run
  alone; fits only alone: wait for the running tasks;
- cannot fit even on an empty worker (peak over the terminate line): never, the scheduler
  is told (``cannot-fit``) and places it elsewhere or fails it with ``TaskMemoryError``;
- unknown prefix: the first run is the measurement, so a second task of the same prefix
  waits until one has finished;
- a retry after a memory kill (``alone``; its peak is known only from below): waits until
  nothing else runs, spills everything spillable, then runs.

No I/O, no clock: the state machine feeds readings in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from ..taskspec import prefix_of

__all__ = ["Admission", "Admit", "Decision", "Room", "prefix_of"]

@dataclass(frozen=True)
class Room:
    """A reading of memory for admission, in bytes."""

    limit: int | None  # the worker's memory limit; None: no limit, everything is admitted
    ceiling: int  # what memory may reach while tasks run (the terminate line)
    used: int  # what the worker uses now (the worse of RSS and the cgroup's share)
    spillable: int  # of which spilling could free

    @property
    def free(self) -> int:
        return self.ceiling - self.used


class Admit(enum.Enum):
    RUN = "run"
    WAIT = "wait"
    SPILL_FIRST = "spill-first"
    NEVER = "never"


@dataclass(frozen=True)
class Decision:
    admit: Admit
    spill: int = 0  # bytes to spill first (SPILL_FIRST)
    peak: int = 0  # the expected peak the decision used
    limit: int = 0
    reason: str = ""


RUN = Decision(Admit.RUN)
WAIT = Decision(Admit.WAIT)


class Admission:
    """Expected peaks per prefix and the start decision; see the module docstring."""

    def __init__(self, margin: float = 0.02) -> None:
        self.peaks: dict[str, int] = {}
        self.margin = margin  # of the limit, spilled beyond the bare need
        self._spilled = False  # a spill for the task at the head of the queue was done

    def learn(self, prefix: str, peak: int) -> None:
        """Remember a peak; the estimate is the largest seen (tasks of a prefix vary)."""
        if peak >= 0:
            self.peaks[prefix] = max(peak, self.peaks.get(prefix, 0))

    def expected(self, prefix: str, hint: int | None = None) -> int | None:
        known = self.peaks.get(prefix)
        if known is None:
            return hint
        return known if hint is None else max(known, hint)

    def spilled_for_next(self) -> None:
        self._spilled = True

    def decide(self, prefix: str, hint: int | None, input_bytes: int,
               running: Iterable[str], room: Room, *, alone: bool = False) -> Decision:
        running = list(running)
        if room.limit is None:
            return self._run()
        if alone:  # a retry after a memory kill: its peak is only known from below
            if running:
                return WAIT
            if room.spillable > 0 and not self._spilled:
                return Decision(Admit.SPILL_FIRST, spill=room.spillable, peak=hint or 0,
                                limit=room.limit)
            return self._run()
        expected = self.expected(prefix, hint)
        if expected is None:  # unknown: this run measures it
            if prefix in running:
                return WAIT
            if running and input_bytes > room.free + room.spillable:
                return WAIT
            return self._run()
        # running tasks may not have reached their peaks yet: keep room for them
        reserved = sum(self.peaks.get(p, 0) for p in running)
        if expected + reserved <= room.free:
            return self._run()
        if running:
            return WAIT  # it fits, if at all, only once the others are done
        if expected > room.ceiling:
            return Decision(
                Admit.NEVER, peak=expected, limit=room.limit,
                reason=(f"expected peak {expected} bytes is above this worker's terminate "
                        f"line of {room.ceiling} bytes (limit {room.limit})"))
        if self._spilled or room.spillable == 0:
            return self._run()  # alone, after spilling what could be: the best there is
        spill = min(room.spillable, expected - room.free + int(self.margin * room.limit))
        return Decision(Admit.SPILL_FIRST, spill=max(spill, 1), peak=expected, limit=room.limit)

    def _run(self) -> Decision:
        self._spilled = False
        return RUN
