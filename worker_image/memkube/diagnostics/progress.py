"""A text progress bar that advances as futures finish.

``progress(futures)`` draws a tqdm bar on stderr (or ``file``) and, by default, blocks until
every future is done, counting how many finished, failed or were cancelled. It relies only on
the documented ``Future`` surface: ``key``, ``status``, ``done()`` and
``add_done_callback(fn)``. Callbacks may fire on any thread (the client's event loop); they
only post to a queue, and the bar is drawn from the caller's thread. While waiting, a sweep
of ``done()`` about once a second counts any future whose callback was lost, so the bar
always finishes.

Not covered: notebook widgets (plain text everywhere), and async code — calling it with
``wait=True`` from a running event loop would block that loop, so it raises; use
``wait=False`` there, which returns a bar that callbacks advance.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TextIO, runtime_checkable

from tqdm import tqdm

from ..errors import ConfigError, TimeoutError


@runtime_checkable
class FutureLike(Protocol):
    """The part of ``memkube.Future`` a progress bar needs."""

    @property
    def key(self) -> str: ...

    @property
    def status(self) -> str: ...

    def done(self) -> bool: ...

    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...


class Progress:
    """A bar over a set of futures; ``wait()`` blocks until all are done."""

    def __init__(self, futures: Iterable[FutureLike], *, file: TextIO | None = None,
                 description: str = "memkube", draw_interval: float = 0.1) -> None:
        unique: dict[str, FutureLike] = {}
        for future in futures:
            unique.setdefault(future.key, future)  # the same key twice is one piece of work
        self.futures = list(unique.values())
        self.statuses: Counter[str] = Counter()
        self._finished: queue.SimpleQueue[FutureLike] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._draw_lock = threading.Lock()  # wait=False: callbacks may draw from many threads
        self._all_done = threading.Event()
        self._seen: set[int] = set()  # id() of each future counted
        self.bar = tqdm(total=len(self.futures), desc=description, unit="task",
                        file=file if file is not None else sys.stderr,
                        mininterval=draw_interval, dynamic_ncols=True, leave=True)
        if not self.futures:
            self._all_done.set()
        for future in self.futures:
            future.add_done_callback(self._on_done)

    def _on_done(self, future: Any) -> None:
        with self._lock:
            # Counted once, whether reported by its callback or found done by a sweep.
            if id(future) in self._seen:
                return
            self._seen.add(id(future))
            if len(self._seen) >= len(self.futures):
                self._all_done.set()
        self._finished.put(future)

    def _sweep(self) -> None:
        """Count futures that are done but whose callback has not come (a callback delivered
        late or lost must not leave the bar waiting forever)."""
        for future in self.futures:
            if id(future) not in self._seen and future.done():
                self._on_done(future)

    def _drain(self) -> None:
        """Advance the bar for every future reported since the last drain."""
        with self._draw_lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        advanced = 0
        while True:
            try:
                future = self._finished.get_nowait()
            except queue.Empty:
                break
            self.statuses[str(getattr(future, "status", "finished"))] += 1
            advanced += 1
        if advanced:
            failed = {s: n for s, n in self.statuses.items() if s != "finished"}
            if failed:
                self.bar.set_postfix(failed, refresh=False)
            self.bar.update(advanced)

    def wait(self, timeout: float | None = None) -> Counter[str]:
        """Block until every future is done; return how many ended in each status."""
        _refuse_running_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        sweeps = 0
        try:
            while not self._all_done.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{len(self.futures) - len(self._seen)} of {len(self.futures)} "
                        f"futures still pending after {timeout}s")
                # Wake a few times a second to redraw; the event ends the wait early.
                step = 0.2 if remaining is None else min(0.2, remaining)
                if not self._all_done.wait(step):
                    sweeps += 1
                    if sweeps % 5 == 0:  # about once a second
                        self._sweep()
                self._drain()
            self._drain()
        finally:
            self.bar.close()
        return self.statuses

    def poll(self) -> None:
        """Redraw from any thread without blocking (the ``wait=False`` mode)."""
        self._drain()
        if self._all_done.is_set() and self.bar.n >= len(self.futures):
            self.bar.close()


def progress(futures: Iterable[FutureLike] | FutureLike, *, wait: bool = True,
             file: TextIO | None = None, description: str = "memkube",
             timeout: float | None = None) -> Progress:
    """Show a progress bar over ``futures``; with ``wait`` (the default) block until all are
    done (raising ``memkube.errors.TimeoutError`` after ``timeout`` seconds). Returns the
    ``Progress``; its ``statuses`` count how many futures finished, erred or were cancelled."""
    items = [futures] if isinstance(futures, FutureLike) else list(futures)
    bar = Progress(items, file=file, description=description)
    if wait:
        bar.wait(timeout)
    else:
        # Without a waiting thread, each completion redraws the bar itself.
        for future in bar.futures:
            future.add_done_callback(lambda _f: bar.poll())
    return bar


def _refuse_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigError("progress(..., wait=True) would block the running event loop; "
                      "use progress(..., wait=False) in async code")
