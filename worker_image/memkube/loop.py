"""An asyncio event loop in a daemon thread, for the synchronous API and the local pool.

Synchronous callers submit coroutines with :meth:`LoopThread.run`, which blocks until the
result (or raises the coroutine's exception). Used by :class:`memkube.Client` when not
``asynchronous`` and by :class:`memkube.LocalCluster` to host the scheduler.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from . import errors

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "memkube-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop: use await instead")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except errors.TimeoutError:
            raise
        except TimeoutError as exc:  # the builtin, raised by concurrent.futures on timeout
            fut.cancel()
            raise errors.TimeoutError(f"operation did not finish within {timeout} s") from exc

    def call_soon(self, callback: Any, *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def stop(self) -> None:
        if self.loop.is_closed() or not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
