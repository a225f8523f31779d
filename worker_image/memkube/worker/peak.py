"""Per-task peak memory from the kernel's high-water mark of this process.

``VmHWM`` in ``/proc/self/status`` is the peak resident set; writing ``5`` to
``/proc/self/clear_refs`` resets it to the current RSS (Linux >= 4.0, allowed for one's own
process, also in a pod: procfs is not the read-only cgroup fs). A task's peak is the
highest mark seen while it ran minus the RSS when it started: exact for one thread, and an
over-estimate (the safe side for admission) when tasks overlap. Without ``clear_refs`` the
meter falls back to RSS at the end minus RSS at the start, which misses temporaries.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def _hwm() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMeter:
    """``start(key)`` when a task begins, ``stop(key)`` -> bytes it added at its peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, list[int]] = {}  # key -> [rss at start, peak since]
        self.exact = self._can_reset()

    @staticmethod
    def _can_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _hwm() > 0
        except OSError as exc:
            log.info("no per-task peak from the kernel (clear_refs: %s); using RSS", exc)
            return False

    def _fold(self) -> None:
        mark = _hwm() if self.exact else _rss()
        for record in self._running.values():
            record[1] = max(record[1], mark)

    def start(self, key: str) -> None:
        with self._lock:
            self._fold()
            if self.exact:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            rss = _rss()
            self._running[key] = [rss, rss]

    def baseline(self) -> int | None:
        """RSS when the oldest running task started (None: nothing runs)."""
        with self._lock:
            return min((r[0] for r in self._running.values()), default=None)

    def stop(self, key: str) -> int:
        with self._lock:
            self._fold()
            record = self._running.pop(key, None)
        if record is None:
            return 0
        return max(0, record[1] - record[0])
