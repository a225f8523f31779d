"""The spill buffer: least-recently-used values in memory over a :class:`SpillDisk`.

``SpillBuffer`` is the ``MutableMapping[str, Any]`` the worker keeps its data in. Values
live in a fast dict, ordered by use; when their total ``sizeof`` exceeds ``target`` the
oldest are written to the slow layer (a value bigger than ``target`` on its own goes
straight there). Reading a spilled value brings it back into memory.

Thread-safety: one lock guards the bookkeeping only. Serializing, compressing and writing a
value happen outside it: the value is parked as "in flight" (still readable) while it is
written, and bound to its key afterwards only if nobody replaced or deleted the key
meanwhile. Reads from disk are outside the lock too.

A value read back from disk keeps its file as a clean copy, so evicting it again is free
when it is unchanged (its frames are checked against the file's checksums first; a value
changed in place is written anew). Clean copies are the first thing dropped when the store
is full.

Failures never lose a value: when the slow layer is full (``max-spill`` or ENOSPC) or
broken, the value stays in memory, ``spill_full`` is set, and a single log line says so;
a value that cannot be pickled stays in memory for good. :meth:`evict` never raises. A
spill file failing its checksum raises :class:`SpillCorruptError` from the read and the key
is dropped, so the worker treats it as lost and it is recomputed.

Not covered: when to spill because of process memory (``policy.py``, ``manager.py``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..errors import SpillCorruptError, SpillError, SpillFullError
from ..serialize import Frame, dumps, loads
from .disk import Blob, SpillDisk
from .sizeof import sizeof

logger = logging.getLogger(__name__)


@dataclass
class _InFlight:
    value: Any
    weight: int
    version: int


@dataclass
class SpillStats:
    """Counters the worker reports as memory figures."""

    spill_count: int = 0
    spill_bytes: int = 0  # bytes written to disk
    spill_seconds: float = 0.0  # summed over writes (concurrent writes overlap)
    spill_busy_seconds: float = 0.0  # wall time with at least one write in flight
    unspill_count: int = 0
    unspill_bytes: int = 0  # bytes read from disk
    unspill_seconds: float = 0.0


class SpillBuffer(MutableMapping[str, Any]):
    """Fast LRU dict over a slow :class:`SpillDisk`, spilling above ``target`` bytes."""

    def __init__(
        self,
        slow: SpillDisk,
        *,
        target: int | None,
        weight: Callable[[Any], int] = sizeof,
        full_retry: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        writers: int = 1,
    ) -> None:
        self.slow = slow
        self.target = target
        self.full_retry = full_retry
        self._weight = weight
        self._clock = clock
        self._fast: dict[str, Any] = {}
        self._lru: OrderedDict[str, int] = OrderedDict()  # key -> weight, oldest first
        self._fast_bytes = 0
        self._inflight: dict[str, _InFlight] = {}
        self._versions: dict[str, int] = {}
        self._counter = itertools.count()
        self._unspillable: set[str] = set()
        self._clean: dict[str, Blob] = {}  # in memory, with an identical copy on disk
        self._lock = threading.RLock()
        self._full_at = 0.0
        self.spill_full = False
        self.stats = SpillStats()
        self.writers = max(1, writers)
        self._pool: ThreadPoolExecutor | None = None
        self._loading: dict[str, threading.Event] = {}
        self._writing = 0
        self._busy_since = 0.0

    def close(self) -> None:
        """Stop the writer threads (after the writes in flight); the data stays."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # figures

    @property
    def managed(self) -> int:
        """Bytes (by sizeof) of the values held in memory, including those being written."""
        with self._lock:
            return self._fast_bytes + sum(e.weight for e in self._inflight.values())

    @property
    def spillable(self) -> int:
        """Bytes in memory that spilling could free (not unpicklable, not in flight)."""
        with self._lock:
            return self._fast_bytes - sum(self._lru[k] for k in self._unspillable)

    @property
    def spilled(self) -> int:
        """Bytes on disk."""
        return self.slow.nbytes

    def in_memory(self, key: str) -> bool:
        with self._lock:
            return key in self._fast or key in self._inflight

    # MutableMapping

    def __setitem__(self, key: str, value: Any) -> None:
        weight = self._weight(value)
        with self._lock:
            old = self._forget(key)
            self._versions[key] = next(self._counter)
            self._fast[key] = value
            self._lru[key] = weight
            self._fast_bytes += weight
        if old is not None:
            self._discard(old)
        if self.target is not None:
            if weight > self.target:
                self.evict(key)
            self.spill_to(self.target)

    def __getitem__(self, key: str) -> Any:
        while True:
            with self._lock:
                if key in self._fast:
                    self._lru.move_to_end(key)
                    return self._fast[key]
                inflight = self._inflight.get(key)
                if inflight is not None:
                    return inflight.value
                blob = self.slow.blob(key)  # KeyError: no such key
                version = self._versions[key]
                loading = self._loading.get(key)
                if loading is None:
                    loading = self._loading[key] = threading.Event()
                    mine = True
                else:
                    mine = False
            if not mine:
                loading.wait()  # another thread (e.g. a prefetch) is reading it: share it
                continue
            try:
                start = time.perf_counter()
                frames = self._read(key, blob, version)
                if frames is None:
                    continue  # replaced or deleted meanwhile: look again
                value = loads(frames)
                return self._after_unspill(key, value, blob, version, start)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
                loading.set()

    def prefetch(self, key: str) -> bool:
        """Read a spilled value back into memory ahead of its use; whether it was read.

        The caller decides whether memory allows it (``manager.py``); a value that does
        not fit under ``target`` is not kept, and nothing here raises for a key that was
        freed meanwhile or is already in memory.
        """
        with self._lock:
            if key in self._fast or key in self._inflight or key not in self._versions:
                return False
        try:
            self[key]
        except (KeyError, SpillError):
            return False
        return True

    def _read(self, key: str, blob: Blob, version: int) -> list[Frame] | None:
        try:
            return self.slow.read_frames(key, blob)
        except KeyError:
            return None
        except SpillCorruptError:
            with self._lock:
                dropped = self._forget(key) if self._versions.get(key) == version else None
            if dropped is not None:
                self.slow.discard(dropped)
            logger.error("spill file of %r is corrupt; the key is dropped to be recomputed", key)
            raise

    def _after_unspill(self, key: str, value: Any, blob: Blob, version: int, start: float) -> Any:
        weight = self._weight(value)
        fits = self.target is None or weight <= self.target
        moved = False
        with self._lock:
            self.stats.unspill_count += 1
            self.stats.unspill_bytes += blob.nbytes
            self.stats.unspill_seconds += time.perf_counter() - start
            if fits and self._versions.get(key) == version and key not in self._fast:
                # the file stays as a clean copy: evicting the value again costs no write
                self._fast[key] = value
                self._lru[key] = weight
                self._fast_bytes += weight
                self._clean[key] = blob
                moved = True
        if moved and self.target is not None:
            self.spill_to(self.target)
        return value

    def __delitem__(self, key: str) -> None:
        with self._lock:
            if key not in self._versions:
                raise KeyError(key)
            blob = self._forget(key)
        if blob is not None:
            self._discard(blob)

    def detach(self, key: str) -> tuple[Any, Blob | None]:
        """Forget ``key`` now, without I/O. Returns its value if it was in memory (None
        otherwise) and its spill file if any, for the caller to let go of elsewhere (a
        large value's deallocation and :meth:`discard` of the file, e.g. in a thread).
        KeyError if there is no such key."""
        with self._lock:
            if key not in self._versions:
                raise KeyError(key)
            inflight = self._inflight.get(key)
            value = self._fast.get(key, inflight.value if inflight is not None else None)
            return value, self._forget(key)

    def discard(self, blob: Blob) -> None:
        """Delete a spill file :meth:`detach` returned."""
        self._discard(blob)

    def _discard(self, blob: Blob) -> None:
        """Delete a blob; if the store was full, the next eviction may try again at once."""
        self.slow.discard(blob)
        with self._lock:
            if self.spill_full:
                self._full_at = 0.0

    def _forget(self, key: str) -> Blob | None:
        """Drop every trace of ``key`` except its blob, which is returned to discard."""
        weight = self._lru.pop(key, None)
        if weight is not None:
            del self._fast[key]
            self._fast_bytes -= weight
        self._inflight.pop(key, None)  # the writer sees this and discards its blob
        self._clean.pop(key, None)
        self._unspillable.discard(key)
        self._versions.pop(key, None)
        return self.slow.unbind(key)

    def __contains__(self, key: object) -> bool:
        return key in self._versions

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._versions))

    def __len__(self) -> int:
        return len(self._versions)

    def clear(self) -> None:
        with self._lock:
            self._fast.clear()
            self._lru.clear()
            self._fast_bytes = 0
            self._inflight.clear()
            self._versions.clear()
            self._unspillable.clear()
            self._clean.clear()
        self.slow.clear()

    # serialized access for peers

    def get_frames(self, key: str) -> list[Frame]:
        """Serialized frames of ``key``: from memory by pickling, from disk as stored."""
        while True:
            blob: Blob | None = None
            with self._lock:
                if key in self._fast:
                    value = self._fast[key]
                elif key in self._inflight:
                    value = self._inflight[key].value
                else:
                    blob = self.slow.blob(key)  # KeyError: no such key
                    version = self._versions[key]
            if blob is None:
                return dumps(value)
            frames = self._read(key, blob, version)
            if frames is not None:
                return frames

    def put_frames(self, key: str, frames: Sequence[Frame]) -> int:
        """Store a value received as serialized frames straight in the slow layer, never
        unpickled (a transfer into a worker whose memory is full); bytes written.

        The frames are written as any spilled value is (codec, checksums, trailer), so
        reading the key later unpickles them as usual. Raises SpillError (SpillFullError
        included) when the store cannot take them; the key is then not stored.
        """
        start = time.perf_counter()
        blob = self._write(frames)
        with self._lock:
            old = self._forget(key)
            self._versions[key] = next(self._counter)
            self.slow.commit(key, blob)
            self.stats.spill_count += 1
            self.stats.spill_bytes += blob.nbytes
            self.stats.spill_seconds += time.perf_counter() - start
        if old is not None:
            self._discard(old)
        return blob.nbytes

    # eviction

    def spill_to(self, target: int) -> int:
        """Evict least-recently-used values until memory holds ``target`` bytes or less."""
        return self._evict_while(lambda: self._fast_bytes > target)

    def spill_bytes(self, nbytes: int) -> int:
        """Evict least-recently-used values until ``nbytes`` are freed or nothing can be."""
        goal = self._fast_bytes - nbytes
        return self._evict_while(lambda: self._fast_bytes > goal)

    def _evict_while(self, more: Callable[[], bool]) -> int:
        """Evict while ``more()``, with up to ``writers`` writes in flight at once."""
        freed = 0
        pending: set[Future[int]] = set()
        try:
            while True:
                while len(pending) < self.writers and more():
                    taken = self._take(None)
                    if taken is None:
                        break  # nothing spillable, or the store is full
                    if self.writers == 1:
                        freed += self._spill(taken)
                        if self.spill_full:
                            return freed
                        continue
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self.writers,
                                                        thread_name_prefix="memkube-spill")
                    pending.add(self._pool.submit(self._spill, taken))
                if not pending:
                    return freed
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                freed += sum(f.result() for f in done)
                if self.spill_full:
                    return freed
        finally:
            for fut in pending:
                freed += fut.result()  # a write in flight finishes before we return

    def evict(self, key: str | None = None) -> int:
        """Write one value (``key``, else the least recently used) to disk; bytes freed.

        Never raises: a value that cannot be written stays in memory and 0 is returned.
        """
        taken = self._take(key)
        return 0 if taken is None else self._spill(taken)

    def _take(self, key: str | None) -> tuple[str, Any, int, int, Blob | None] | None:
        """Move a value from memory to "in flight" (still readable) for writing."""
        with self._lock:
            if self.spill_full and self._clock() - self._full_at < self.full_retry:
                return None
            key = self._pick(key)
            if key is None:
                return None
            value = self._fast.pop(key)
            weight = self._lru.pop(key)
            self._fast_bytes -= weight
            version = self._versions[key]
            self._inflight[key] = _InFlight(value, weight, version)
            clean = self._clean.pop(key, None)
        return key, value, weight, version, clean

    def _spill(self, taken: tuple[str, Any, int, int, Blob | None]) -> int:
        """Write a taken value and bind its file; never raises (0 if it stays in memory)."""
        with self._lock:
            self._writing += 1
            if self._writing == 1:
                self._busy_since = time.perf_counter()
        try:
            return self._spill_taken(taken)
        finally:
            with self._lock:
                self._writing -= 1
                if self._writing == 0:
                    self.stats.spill_busy_seconds += time.perf_counter() - self._busy_since

    def _spill_taken(self, taken: tuple[str, Any, int, int, Blob | None]) -> int:
        key, value, weight, version, clean = taken
        start = time.perf_counter()
        try:
            frames = dumps(value)
        except Exception as exc:  # noqa: BLE001 - pickling runs user code, which may raise anything
            self._put_back(key, version)
            with self._lock:
                if self._versions.get(key) == version:
                    self._unspillable.add(key)
            logger.warning("cannot spill %r, keeping it in memory: %r", key, exc)
            return 0
        if clean is not None:
            if clean.holds(frames):
                return self._bind(key, version, weight, clean, start, written=False)
            # changed in place since it was read back: the old copy is wrong now
            with self._lock:
                stale = self.slow.unbind(key, clean)
            if stale is not None:
                self._discard(stale)
        try:
            blob = self._write(frames)
        except SpillError as exc:  # SpillFullError included
            self._put_back(key, version)
            self._mark_full(str(exc) if isinstance(exc, SpillFullError) else f"disk failed: {exc}")
            return 0
        except Exception:
            self._put_back(key, version)
            logger.exception("spilling %r failed; keeping it in memory", key)
            return 0
        return self._bind(key, version, weight, blob, start, written=True)

    def _write(self, frames: Sequence[Frame]) -> Blob:
        """Write frames; when full, drop the clean copies of values in memory and retry once."""
        try:
            return self.slow.prepare_frames(frames)
        except SpillFullError:
            with self._lock:
                copies = [(k, b) for k, b in self._clean.items()]
                self._clean.clear()
                dropped = [b for k, b in copies if self.slow.unbind(k, b) is not None]
            if not dropped:
                raise
            for blob in dropped:
                self.slow.discard(blob)
            return self.slow.prepare_frames(frames)

    def _pick(self, key: str | None) -> str | None:
        if key is not None:
            return key if key in self._fast and key not in self._unspillable else None
        for candidate in self._lru:
            if candidate not in self._unspillable:
                return candidate
        return None

    def _bind(
        self, key: str, version: int, weight: int, blob: Blob, start: float, *, written: bool
    ) -> int:
        with self._lock:
            entry = self._inflight.get(key)
            current = entry is not None and entry.version == version
            if current:
                del self._inflight[key]
                if written:
                    self.slow.commit(key, blob)
                    self.stats.spill_count += 1
                    self.stats.spill_bytes += blob.nbytes
                    self.stats.spill_seconds += time.perf_counter() - start
                if self.spill_full and written:
                    self.spill_full = False
                    logger.warning("spill store has room again; spilling resumes")
        if not current:
            if written:
                self.slow.discard(blob)  # the key was deleted or replaced while we wrote
            return 0
        return weight

    def _put_back(self, key: str, version: int) -> None:
        with self._lock:
            entry = self._inflight.get(key)
            if entry is None or entry.version != version:
                return
            del self._inflight[key]
            self._fast[key] = entry.value
            self._lru[key] = entry.weight
            self._lru.move_to_end(key, last=False)  # still the first to go when room returns
            self._fast_bytes += entry.weight

    def _mark_full(self, reason: str) -> None:
        with self._lock:
            was_full = self.spill_full
            self.spill_full = True
            self._full_at = self._clock()
        if not was_full:
            logger.warning(
                "spill store full (%s): keeping values in memory; the worker pauses until "
                "space is freed",
                reason,
            )
