"""Fetching values from peer workers over HTTP (``POST /data`` with a list of keys).

One request per peer carries many keys (a batch sized to the worker's memory by
:class:`Transfers`, :mod:`.intake`); the answer is a bundle of pickle-5 frames
(:func:`memkube.serialize.pack_bundle`), stored in an I/O thread. A peer that
cannot be reached, or does not hold a key, is reported back so the caller can try another
holder and finally tell the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

from .. import serialize
from ..addresses import parse_address
from ..bulk import BulkClient, fetch_bundle
from ..errors import ProtocolError, SpillError
from ..memory import WorkerMemory, sizeof
from .intake import Intake, expected, next_batch, shortfall, to_disk, unlimited

log = logging.getLogger(__name__)


async def fetch_from_peer(
    bulk: BulkClient, address: str, keys: list[str]
) -> tuple[dict[str, list[memoryview]], list[str]]:
    """Fetch ``keys`` from the worker at ``address``: (frames by key, keys not obtained)."""
    try:
        items, _missing, errors, _ = await fetch_bundle(bulk, parse_address(address), keys)
    except (OSError, ProtocolError) as exc:  # a peer that is gone, silent or broken
        log.warning("could not fetch %d keys from %s: %s", len(keys), address, exc)
        return {}, list(keys)
    failed = [k for k in keys if k not in items]
    if errors:
        log.warning("peer %s could not serialize %s", address, ", ".join(errors))
    return items, failed


class Transfers:
    """A worker's incoming transfers, bounded by its memory (:mod:`.intake`).

    Every fetch of the worker goes through one instance, so the bytes of batches on their
    way (:attr:`incoming`) are shared by concurrent fetches. ``paused()`` tells whether the
    worker is paused; ``report(sizes)`` is called on the event loop with each stored batch.
    """

    def __init__(self, memory: WorkerMemory, executor: Executor, *,
                 paused: Callable[[], bool],
                 report: Callable[[dict[str, int]], None]) -> None:
        self.memory, self.executor = memory, executor
        self.paused, self.report = paused, report
        self.incoming = 0

    def reading(self) -> Intake:
        config = self.memory.config
        limit = config.acting_limit
        if limit is None:  # no limit, or switched off: transfers are not bounded
            return unlimited()
        r = self.memory.reading()
        return Intake(limit, int(config.thresholds.intake_line * limit),
                      self.memory.used_bytes(r), config.target_bytes, r.managed, self.incoming)

    async def fetch(self, bulk: BulkClient, me: str,
                    who_has: dict[str, list[str]], nbytes: dict[str, int],
                    stored: dict[str, int]) -> dict[str, list[str]]:
        """Fetch from holders in batches that fit this worker's memory (:mod:`.intake`),
        falling back to other holders; each stored batch is reported at once. Returns the
        keys left for later because the worker paused."""
        remaining = dict(who_has)
        tried: dict[str, set[str]] = {k: set() for k in who_has}
        loop = asyncio.get_running_loop()
        stuck_since: float | None = None
        while remaining:
            choice: dict[str, str] = {}
            for key, holders in list(remaining.items()):
                options = [h for h in holders if h not in tried[key] and h != me]
                if not options:
                    del remaining[key]
                    continue
                choice[key] = options[0]
            if not choice:
                break
            wanted = [(k, int(nbytes.get(k, 0))) for k in choice]
            intake = self.reading()
            batch = next_batch(wanted, intake)
            if not batch:
                if self.paused():  # a paused worker takes no transfer until it resumes
                    return {k: remaining[k] for k in choice}
                if intake.incoming:
                    await asyncio.sleep(0.05)  # other batches take the room: they land first
                    continue
                freed = await loop.run_in_executor(
                    self.executor, self.memory.data.spill_bytes,
                    shortfall(wanted[0][1], intake))
                if freed:
                    continue
                now = time.monotonic()
                stuck_since = stuck_since or now
                if now - stuck_since < 5.0:
                    await asyncio.sleep(0.1)  # the memory manager may spill or pause
                    continue
                batch = [wanted[0][0]]  # no room comes: one key, so nothing waits forever
            stuck_since = None
            plan: dict[str, list[str]] = {}
            for key in batch:
                plan.setdefault(choice[key], []).append(key)
                tried[key].add(choice[key])
            reserved = expected([int(nbytes.get(k, 0)) for k in batch], intake)
            self.incoming += reserved
            try:
                results = await asyncio.gather(*(
                    fetch_from_peer(bulk, peer, keys) for peer, keys in plan.items()))
                while results:
                    items, _failed = results.pop()
                    if items:
                        sizes = await loop.run_in_executor(
                            self.executor, self.store, items, nbytes)
                        stored.update(sizes)
                        for key in sizes:
                            remaining.pop(key, None)
                        self.report(sizes)
                    # the answer's buffer goes now, not when the next batch has come: the
                    # room the next batch is given counts it as used
                    del items
            finally:
                self.incoming -= reserved
        return {}

    def store(self, items: dict[str, list[memoryview]],
              nbytes: dict[str, int]) -> dict[str, int]:
        """Store received values: in memory while they fit under the target, else their
        frames straight into the spill store (not unpickled). Runs in an I/O thread."""
        sizes = {}
        for key, frames in items.items():
            size = int(nbytes.get(key, 0)) or sum(memoryview(f).nbytes for f in frames)
            if to_disk(size, self.reading()):
                try:
                    self.memory.data.put_frames(key, frames)
                    sizes[key] = size
                    continue
                except SpillError as exc:  # full or failing: keep it in memory instead
                    log.warning("cannot spill fetched %r, keeping it in memory: %s", key, exc)
            value = serialize.loads(frames)
            self.memory.data[key] = value
            sizes[key] = sizeof(value)
        return sizes
