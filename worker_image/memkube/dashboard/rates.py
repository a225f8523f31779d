"""Rates and short histories derived from snapshots taken over time.

The memory figures carry only monotonic counters (bytes spilled so far, ...). The dashboard
wants "how fast is this worker spilling right now", so ``CounterRates`` keeps each worker's
counters over a sliding window and turns them into per-second rates, treating a counter that
went down as a restarted worker (as Prometheus' ``rate()`` does). ``MemoryHistory`` keeps the
pool's memory totals for the page's chart.

Both are fed whenever a snapshot is taken; they never call the clock themselves, so tests
drive them with made-up times. Not covered: persistence (history starts when the dashboard
is first looked at, and lives only in the scheduler process).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

RATE_COUNTERS: tuple[str, ...] = (
    "spill_bytes", "spill_count", "unspill_bytes", "unspill_count",
)


@dataclass
class _Series:
    """One worker's counters: the last raw values and the cumulative increase over time."""

    last: dict[str, float]
    # (time, cumulative increase per counter since we started watching)
    points: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)


class CounterRates:
    """Per-second rates of each worker's counters over the last ``window`` seconds."""

    def __init__(self, window: float = 10.0, forget_after: float = 300.0) -> None:
        self.window = window
        self.forget_after = forget_after
        self._series: dict[str, _Series] = {}

    def observe(self, now: float, workers: Iterable[tuple[str, Mapping[str, float]]]) -> None:
        """Record each worker's counters (``(name, figures)`` pairs) as of ``now``."""
        for name, figures in workers:
            values = {key: float(figures.get(key) or 0) for key in RATE_COUNTERS}
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = _Series(last=values)
                series.points.append((now, dict.fromkeys(RATE_COUNTERS, 0.0)))
                continue
            if now <= series.points[-1][0]:
                continue  # two views in the same instant: nothing new to learn
            total = dict(series.points[-1][1])
            for key, value in values.items():
                previous = series.last[key]
                # A counter that went down belongs to a restarted process counting from zero.
                total[key] += value - previous if value >= previous else value
            series.last = values
            series.points.append((now, total))
            # Keep one point at or before the window's start, so the rate spans the window.
            while len(series.points) > 2 and series.points[1][0] <= now - self.window:
                series.points.popleft()
        for name in [n for n, s in self._series.items() if s.points[-1][0] < now - self.forget_after]:
            del self._series[name]

    def rates(self, name: str) -> dict[str, float]:
        """``{counter: per-second rate}`` for one worker; zeros until two observations exist."""
        series = self._series.get(name)
        if series is None or len(series.points) < 2:
            return dict.fromkeys(RATE_COUNTERS, 0.0)
        (t0, first), (t1, last) = series.points[0], series.points[-1]
        span = t1 - t0
        return {key: (last[key] - first[key]) / span for key in RATE_COUNTERS}


class MemoryHistory:
    """The pool's memory totals, at most one point per ``resolution`` seconds."""

    def __init__(self, keep: float = 600.0, resolution: float = 1.0) -> None:
        self.keep = keep
        self.resolution = resolution
        self._points: deque[tuple[float, int, int, int]] = deque()

    def observe(self, now: float, managed: int, unmanaged: int, spilled: int) -> None:
        if self._points and now - self._points[-1][0] < self.resolution:
            return
        self._points.append((now, managed, unmanaged, spilled))
        while self._points and self._points[0][0] < now - self.keep:
            self._points.popleft()

    def points(self) -> list[tuple[float, int, int, int]]:
        """``(time, managed, unmanaged, spilled)`` oldest first."""
        return list(self._points)
