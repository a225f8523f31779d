"""Waiting on many futures: ``wait`` and ``as_completed`` (sync iterators, like Dask's)."""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from ..errors import TimeoutError
from .futures import Future

ALL_COMPLETED, FIRST_COMPLETED = "ALL_COMPLETED", "FIRST_COMPLETED"


class DoneAndNotDone(NamedTuple):
    done: set[Future]
    not_done: set[Future]


def wait(futures: Iterable[Future], timeout: float | None = None,
         return_when: str = ALL_COMPLETED) -> DoneAndNotDone:
    """Block until all (or the first) futures are done; raises TimeoutError after ``timeout``."""
    futures = list(futures)
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED):
        raise ValueError("return_when must be ALL_COMPLETED or FIRST_COMPLETED")
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    for fut in futures:
        fut.add_done_callback(finished.put)
    needed = 1 if return_when == FIRST_COMPLETED else len(futures)
    got = 0
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while got < needed:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            finished.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError(f"futures not done within {timeout} s") from None
        got += 1
    done = {f for f in futures if f.done()}
    return DoneAndNotDone(done, set(futures) - done)


def as_completed(futures: Iterable[Future], with_results: bool = False,
                 timeout: float | None = None) -> Iterator[Any]:
    """Yield futures (or ``(future, result)``) in the order they finish."""
    futures = list(futures)
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    for fut in futures:
        fut.add_done_callback(finished.put)
    for _ in futures:
        try:
            fut = finished.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no future finished within {timeout} s") from None
        yield (fut, fut.result()) if with_results else fut
