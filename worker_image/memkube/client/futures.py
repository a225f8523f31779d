"""Futures: a client-side handle on one key, reference counted.

Every :class:`Future` object of a key counts as one reference; when the last one is
garbage-collected (``del future``), the client tells the scheduler (batched) that it no
longer holds the key, and the pool frees it once nothing else needs it. The shared,
per-key :class:`FutureState` carries the status and the error.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle

from ..errors import CancelledError, TaskError

if TYPE_CHECKING:
    from .client import Client

PENDING, FINISHED, ERROR, CANCELLED = "pending", "finished", "error", "cancelled"


class FutureState:
    """Status of a key as this client knows it; shared by all Future objects of the key."""

    __slots__ = (
        "_event",
        "_loop",
        "callbacks",
        "exception",
        "reason",
        "status",
        "traceback",
        "type",
        "value",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.status = PENDING
        self.type = ""
        self.value: bytes | None = None  # a small result that came inline (packed frames)
        self.exception: BaseException | None = None
        self.traceback = ""
        self.reason = ""
        self._loop = loop
        self._event: asyncio.Event | None = None
        self.callbacks: list[Callable[[], None]] = []

    def _done(self) -> None:
        if self._event is not None:
            self._event.set()
        callbacks, self.callbacks = self.callbacks, []
        for cb in callbacks:
            cb()

    def finish(self, type_: str) -> None:
        self.status, self.type = FINISHED, type_
        self._done()

    def fail(self, exception_blob: bytes, traceback: str, text: str) -> None:
        try:
            exc = cloudpickle.loads(exception_blob) if exception_blob else TaskError(text)
        except Exception:  # noqa: BLE001 - an exception class the client cannot import
            exc = TaskError(text, traceback)
        if not isinstance(exc, BaseException):
            exc = TaskError(text, traceback)
        if traceback:
            exc.add_note("Remote traceback (most recent call last, on the worker):\n"
                         + traceback.rstrip())
        self.status, self.exception, self.traceback = ERROR, exc, traceback
        self._done()

    def cancel(self, reason: str) -> None:
        if self.status == PENDING or reason != "cancelled":
            self.status, self.reason = CANCELLED, reason
            self.exception = CancelledError(f"future cancelled: {reason}")
            self._done()

    def reset(self) -> None:
        """The key is submitted again (after a cancel or a forced release)."""
        self.status, self.exception, self.reason = PENDING, None, ""
        if self._event is not None:
            self._event.clear()

    def raisable(self) -> BaseException:
        """A copy of the error to raise: raising the stored exception itself would attach the
        raiser's frames (and the futures they hold) to it for as long as this state lives."""
        assert self.exception is not None
        try:
            return copy.copy(self.exception).with_traceback(None)
        except Exception:  # noqa: BLE001 - an exception type that cannot be copied
            return self.exception

    async def wait(self) -> None:
        if self.status != PENDING:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()

    def done(self) -> bool:
        return self.status != PENDING


class Future:
    """A handle on a remote result. Dask-like: ``result()``, ``done()``, ``cancel()`` …"""

    __slots__ = ("__weakref__", "_state", "client", "key")

    def __init__(self, key: str, client: Client) -> None:
        self.key = key
        self.client = client
        self._state = client._acquire_ref(key)

    @property
    def status(self) -> str:
        return self._state.status

    @property
    def type(self) -> str:
        return self._state.type

    def done(self) -> bool:
        return self._state.done()

    def result(self, timeout: float | None = None) -> Any:
        """The value (fetched from the pool), or the task's exception raised here."""
        return self.client.sync(self._result, timeout=timeout)

    async def _result(self) -> Any:
        values = await self.client._gather([self], errors="raise")
        return values[0]

    def exception(self, timeout: float | None = None) -> Any:
        """The task's exception or None (an awaitable with an asynchronous client)."""
        return self.client.sync(self._exception, timeout=timeout)

    async def _exception(self) -> BaseException | None:
        await self._state.wait()
        return self._state.exception if self._state.status == ERROR else None

    def traceback(self) -> str:
        return self._state.traceback

    def cancel(self) -> None:
        self.client.cancel([self])

    def cancelled(self) -> bool:
        return self._state.status == CANCELLED

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call ``fn(self)`` once the future is done (at once if it already is).

        Called in the client's event loop thread: keep it short.
        """
        def call() -> None:
            fn(self)

        def register() -> None:  # on the loop, so "done" cannot change in between
            if self.done():
                call()
            else:
                self._state.callbacks.append(call)

        self.client._loop_call(register)

    def release(self) -> None:
        self.client._release_ref(self.key)
        self.key = ""

    def __del__(self) -> None:
        try:
            if self.key:
                self.client._release_ref(self.key)
        except Exception:  # noqa: BLE001, S110 - at interpreter shutdown the client's loop
            pass  # is gone and there is nothing left to release or to log to

    def __repr__(self) -> str:
        return f"<Future {self.status} key={self.key!r}>"

    def __await__(self) -> Any:
        return self._result().__await__()

    def __reduce__(self) -> Any:
        raise TypeError("memkube futures cannot be pickled; pass them as task arguments")


# Nested structures of futures (lists, tuples, sets, dicts), as gather and cancel take them.

def as_list(futures: Any) -> list[Future]:
    if isinstance(futures, Future):
        return [futures]
    found: list[Future] = []
    collect_futures(futures, found)
    return found


def collect_futures(obj: Any, out: list[Future]) -> None:
    if isinstance(obj, Future):
        out.append(obj)
    elif isinstance(obj, (list, tuple, set)):
        for x in obj:
            collect_futures(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            collect_futures(x, out)


def rebuild(obj: Any, values: dict[str, Any]) -> Any:
    if isinstance(obj, Future):
        return values.get(obj.key)
    if isinstance(obj, (list, tuple, set)):
        return type(obj)(rebuild(x, values) for x in obj)
    if isinstance(obj, dict):
        return {k: rebuild(v, values) for k, v in obj.items()}
    return obj
