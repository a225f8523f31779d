"""``WorkerMemory``: the worker's data mapping, its spill store and the memory monitor.

Wires the parts together: a :class:`SpillBuffer` over a :class:`SpillDisk` in a private
spill directory (``data``), the :class:`MemoryPolicy`, readings of the process's RSS and
its own cgroup (``kernelfiles.py``), and kernel notifications (``events.py``) that wake the monitor before
its next poll. The monitor is an asyncio task; spilling, gc and ``malloc_trim`` run in
threads, so the event loop never waits on the disk.

The worker's callbacks ``on_pause(reason)``, ``on_resume(reason)`` and
``on_terminate(reason)`` may be plain functions or coroutines. ``on_terminate`` is called
once; the worker tells the scheduler why and exits with ``EXIT_MEMORY_RESTART``.

Not covered: the worker's protocol (it lives in ``memkube.worker`` and imports this).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import inspect
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import TypedDict

from ..serialize import Frame
from .buffer import SpillBuffer
from .cgroup import CgroupMemory, own_memory_cgroup
from .config import MemoryConfig
from .disk import SpillDisk
from .events import MemoryEvents
from .files import File
from .kernelfiles import ProcessRSS
from .policy import (
    Action,
    CollectGarbage,
    MemoryPolicy,
    Pause,
    Reading,
    Resume,
    Spill,
    Terminate,
    TrimMalloc,
    Warn,
)
from .spilldir import SpillDirectory

logger = logging.getLogger(__name__)

Callback = Callable[[str], Awaitable[None] | None]
PAUSE_WARN_EVERY = 60.0  # seconds between "pausing" warnings; the others are logged at INFO


class ThresholdFigures(TypedDict):
    target: float | None
    spill: float | None
    pause: float | None
    terminate: float | None


class MemoryFigures(TypedDict):
    """The memory figures of the heartbeat, ``/api/v1/pool`` and ``/metrics``."""

    limit: int | None
    process: int
    managed: int
    unmanaged: int
    spilled: int
    cgroup_usage: int | None
    paused: bool
    state: str
    spill_count: int
    spill_bytes: int
    spill_seconds: float
    spill_busy_seconds: float
    unspill_count: int
    unspill_bytes: int
    unspill_seconds: float
    spill_full: bool
    thresholds: ThresholdFigures


def malloc_trim() -> bool:
    """Return freed heap pages to the OS (glibc only); whether it could be called."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


class WorkerMemory:
    """The worker's data, spilled to disk and watched so the kernel never has to OOM-kill."""

    def __init__(self, config: MemoryConfig, *, cgroup: CgroupMemory | None | bool = True) -> None:
        self.config = config
        self._directory = SpillDirectory(config.spill_dir or tempfile.gettempdir())
        self.spill_dir = self._directory.path
        self._files = File(self.spill_dir, mode=config.write_mode)
        disk = SpillDisk(self._files, max_bytes=config.max_spill, compression=config.compression)
        self.data = SpillBuffer(disk, target=config.target_bytes, writers=config.writers)
        self.policy = MemoryPolicy(config.limit, config.thresholds, config.escalation)
        # cgroup=True: find our own; None/False: ignore cgroups; a CgroupMemory: use it
        if cgroup is True:
            self._cgroup = own_memory_cgroup()
        else:
            self._cgroup = cgroup or None
        self._cgroup_limit = self._cgroup.limit() if self._cgroup else None
        self._rss = ProcessRSS()  # read for every task admitted: kept open (kernelfiles)
        self._wake: asyncio.Event | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._spilling: asyncio.Task[int] | None = None
        self._events: MemoryEvents | None = None
        self._callbacks: dict[str, Callback | None] = {}
        self.kernel_events = 0
        self._pause_warned = -PAUSE_WARN_EVERY

    # reading

    def reading(self, now: float | None = None) -> Reading:
        """Measure now: RSS, the cgroup's working set, managed and spilled bytes."""
        loop_time = now if now is not None else time.monotonic()
        return Reading(
            time=loop_time,
            process=self._rss(),
            managed=self.data.managed,
            spillable=self.data.spillable,
            spilled=self.data.spilled,
            spill_full=self.data.spill_full,
            cgroup_usage=self._cgroup_usage(),
            cgroup_limit=self._cgroup_limit,
        )

    def _cgroup_usage(self) -> int | None:
        if self._cgroup is None:
            return None
        try:
            return self._cgroup.working_set()
        except OSError as exc:  # the cgroup vanished (moved by an operator): go on without
            logger.warning("cannot read cgroup memory any more, using RSS only: %s", exc)
            self._cgroup = None
            self._cgroup_limit = None
            return None

    @property
    def paused(self) -> bool:
        return self.policy.paused

    def get_frames(self, key: str) -> list[Frame]:
        """Serialized frames of ``key``; from disk without unpickling if spilled (a thread)."""
        return self.data.get_frames(key)

    def prefetch(self, wanted: dict[str, int]) -> list[str]:
        """Read spilled values back ahead of use, in the order given, while memory allows.

        Each must be small beside ``target`` (a quarter of it at most) and fit under the
        pause threshold counting what spilling can free; reading it in may evict the least
        recently used values, as any unspill does. Stops at the first that does not fit
        (priority order), and while paused. Blocks: call it from a thread. ``wanted`` maps
        keys to their size in memory as the scheduler knows it."""
        target = self.config.target_bytes
        if target is None:
            return []
        read = []
        for key, nbytes in wanted.items():
            if key not in self.data or self.data.in_memory(key):
                continue
            if self.paused or nbytes * 4 > target or not self.can_fit(nbytes):
                break  # in priority order: never skip ahead of a value that did not fit
            if self.data.prefetch(key):
                read.append(key)
        return read

    def used_bytes(self, r: Reading) -> int:
        """What the worker uses by the policy's measure (the worse of RSS and its cgroup
        share), in bytes; 0 without a limit."""
        return int(self.policy.fraction(r) * (self.config.limit or 0))

    def can_fit(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more would stay under the pause threshold, counting what
        spilling can free (a task whose inputs cannot fit is not started)."""
        limit = self.config.limit
        if limit is None:
            return True
        r = self.reading()
        freeable = 0 if r.spill_full else r.spillable
        return self.used_bytes(r) - freeable + nbytes <= self.config.thresholds.intake_line * limit

    def figures(self) -> MemoryFigures:
        r = self.reading()
        stats = self.data.stats
        t = self.config.thresholds
        return {
            "limit": self.config.limit,
            "process": r.process,
            "managed": r.managed,
            "unmanaged": max(0, r.process - r.managed),
            "spilled": r.spilled,
            "cgroup_usage": r.cgroup_usage,
            "paused": self.policy.paused,
            "state": self.policy.state,
            "spill_count": stats.spill_count,
            "spill_bytes": stats.spill_bytes,
            "spill_seconds": stats.spill_seconds,
            "spill_busy_seconds": stats.spill_busy_seconds,
            "unspill_count": stats.unspill_count,
            "unspill_bytes": stats.unspill_bytes,
            "unspill_seconds": stats.unspill_seconds,
            "spill_full": r.spill_full,
            "thresholds": {
                "target": t.target,
                "spill": t.spill,
                "pause": t.pause,
                "terminate": t.terminate,
            },
        }

    # the monitor

    async def start(
        self,
        on_pause: Callback | None = None,
        on_resume: Callback | None = None,
        on_terminate: Callback | None = None,
    ) -> None:
        """Start the monitor (kernel events where available, else the poll alone)."""
        if self._monitor is not None:
            raise RuntimeError("the memory monitor is already running")
        self._callbacks = {"pause": on_pause, "resume": on_resume, "terminate": on_terminate}
        self._wake = asyncio.Event()
        if self.config.limit is not None and self._cgroup is not None:
            self._start_events(asyncio.get_running_loop())
        self._monitor = asyncio.create_task(self._run(), name="memkube-memory-monitor")

    def _start_events(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._cgroup is not None and self.config.limit is not None
        t = self.config.thresholds
        fractions = [f for f in (t.spill, t.pause, t.terminate) if f is not None]
        bytes_at = [int(f * self.config.limit) for f in fractions]
        if self._cgroup_limit is not None:
            bytes_at += [int(f * self._cgroup_limit) for f in fractions]
        wake = self._wake
        assert wake is not None

        def notify(source: str) -> None:  # runs in the events thread
            self.kernel_events += 1
            loop.call_soon_threadsafe(wake.set)

        self._events = MemoryEvents(self._cgroup, bytes_at, notify)
        if self._events.start():
            logger.debug("memory monitor listens to kernel events: %s", self._events.sources)
        else:
            self._events = None

    async def check_now(self) -> list[Action]:
        """Take a reading and act on it at once, waiting for any spill it starts.

        The worker may call it after a task finishes instead of waiting for the monitor.
        """
        actions = self.policy.step(self.reading())
        for action in actions:
            await self._act(action)
        if self._spilling is not None:
            await asyncio.gather(self._spilling, return_exceptions=True)
        return actions

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                for action in self.policy.step(self.reading()):
                    await self._act(action)
            except Exception:
                logger.exception("memory monitor step failed; trying again at the next reading")
            interval = self.config.monitor_interval
            if self.policy.resume_pending:  # read again when the resume may be due
                interval = min(interval, self.policy.resume_after)
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                pass  # the poll: no kernel event came first

    async def _act(self, action: Action) -> None:
        match action:
            case Spill(nbytes):
                if self._spilling is None or self._spilling.done():
                    self._spilling = asyncio.create_task(
                        asyncio.to_thread(self.data.spill_bytes, nbytes)
                    )
                    self._spilling.add_done_callback(self._spill_done)
            case Pause(reason):
                # pausing and resuming may alternate quickly: warn once a minute, not each time
                now = time.monotonic()
                quiet = now - self._pause_warned < PAUSE_WARN_EVERY
                logger.log(logging.INFO if quiet else logging.WARNING, "pausing: %s", reason)
                if not quiet:
                    self._pause_warned = now
                await self._call("pause", reason)
            case Resume(reason):
                logger.info("resuming: %s", reason)
                await self._call("resume", reason)
            case CollectGarbage():
                await asyncio.to_thread(gc.collect)
            case TrimMalloc():
                await asyncio.to_thread(malloc_trim)
            case Warn(message):
                logger.warning("%s", message)
            case Terminate(reason):
                logger.error("memory restart: %s", reason)
                await self._call("terminate", reason)

    def _spill_done(self, task: asyncio.Task[int]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("spilling failed", exc_info=task.exception())
        if self._wake is not None:
            self._wake.set()  # measure again at once: did it help?

    async def _call(self, name: str, reason: str) -> None:
        callback = self._callbacks.get(name)
        if callback is None:
            return
        result = callback(reason)
        if inspect.isawaitable(result):
            await result

    async def close(self) -> None:
        """Stop the monitor and remove every spill file and the spill directory."""
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
            self._monitor = None
        if self._spilling is not None:
            await asyncio.gather(self._spilling, return_exceptions=True)
            self._spilling = None
        if self._events is not None:
            await asyncio.to_thread(self._events.close)
            self._events = None
        await asyncio.to_thread(self._remove_spill)

    def _remove_spill(self) -> None:
        self.data.clear()
        self.data.close()
        self._files.close()
        self._directory.remove()  # closing twice is harmless

    def close_sync(self) -> None:
        """Remove the spill directory without an event loop (the monitor must be stopped)."""
        self._remove_spill()
