"""Bounded intake: how much a worker fetches from its peers at once, and where it puts it.

A transfer arrives whole before it is stored (one HTTP answer per batch of keys), so a
batch costs its bytes in memory until stored. :func:`next_batch` picks the keys of the
next batch from what is still wanted, in order: as many as fit both the room below the
pause line and a share of the limit (so that a receiver, and the peer that serves it,
hold at most a small slice of their memory in flight), and at least one key, so a value
larger than the slice still moves; none at all while the next key would take the worker
to its pause line (a paused worker accepts no transfer: the shell spills to make room,
waits, or defers the keys until the worker resumes). :func:`to_disk` decides where a received value goes: into
memory while it fits under the target (the line above which the buffer spills anyway),
else its received frames go straight into the spill store, never unpickled.

Batches of concurrent fetches (each compute-task's inputs, each acquire-replicas) share
the room: the shell counts the bytes of batches on their way (``incoming``) and a batch
waits while they take the room.

No I/O: the shell reads the :class:`Intake` figures and carries the decisions out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Largest share of the memory limit one batch may carry (Dask caps a transfer at 50 MB).
BATCH_SHARE = 1 / 8


@dataclass(frozen=True)
class Intake:
    """A reading of memory for taking in transfers, in bytes."""

    limit: int | None  # the worker's memory limit; None: no limit, nothing is bounded
    pause: int  # the pause line (no transfer is taken at or above it)
    used: int  # what the worker uses now (the worse of RSS and the cgroup's share)
    target: int | None  # what values in memory may reach before the buffer spills
    managed: int  # what values in memory take now
    incoming: int = 0  # bytes of batches already on their way here (other fetches)

    @property
    def room(self) -> int:
        """Bytes a batch may bring in now: below the pause line, within the batch share."""
        if self.limit is None:
            return 1 << 62
        return min(self.pause - self.used - self.incoming, self.share)

    @property
    def share(self) -> int:
        """The most one batch may carry: :data:`BATCH_SHARE` of the limit."""
        return 1 << 62 if self.limit is None else max(1, int(self.limit * BATCH_SHARE))


def unlimited() -> Intake:
    return Intake(None, 0, 0, None, 0)


def next_batch(wanted: Sequence[tuple[str, int]], intake: Intake) -> list[str]:
    """The keys of ``wanted`` (key, expected bytes; in order) to fetch in the next batch.

    Empty when the first key would take memory past the pause line (the shell makes room
    by spilling, or waits), else the longest prefix of ``wanted`` whose bytes fit
    :attr:`Intake.room`, and at least one key (one larger than the batch share comes
    alone). A key of unknown size (0) counts as filling the batch: it comes alone.
    """
    if not wanted:
        return []
    room = intake.room
    first = wanted[0][1] if wanted[0][1] > 0 else min(intake.share, room)
    if intake.limit is not None and (
            intake.used + intake.incoming + max(0, first) >= intake.pause):
        return []
    batch: list[str] = []
    total = 0
    for key, nbytes in wanted:
        cost = nbytes if nbytes > 0 else max(room, 1)
        if batch and total + cost > room:
            break
        batch.append(key)
        total += cost
    return batch


def expected(sizes: Sequence[int], intake: Intake) -> int:
    """Bytes a batch of keys of these sizes brings (one of unknown size: the share)."""
    return sum(n if n > 0 else intake.share for n in sizes)


def shortfall(nbytes: int, intake: Intake) -> int:
    """Bytes to spill before a value of ``nbytes`` can come in below the pause line."""
    if intake.limit is None:
        return 0
    return max(0, intake.used + max(0, nbytes) - intake.pause + 1)


def to_disk(nbytes: int, intake: Intake) -> bool:
    """Whether a received value of ``nbytes`` goes straight to the spill store: when the
    values in memory would pass the target with it, or memory is near the pause line."""
    if intake.limit is None or intake.target is None:
        return False
    return (intake.managed + nbytes > intake.target
            or intake.used + nbytes > intake.pause)
