"""Memory-aware placement: per-prefix peaks, memory kills, and tasks that can never fit.

Workers report the peak memory each finished task added (``task-finished`` ``peak``) and,
after their memory guard stopped them, which tasks were running and the peak reached
(``memory_kill`` in ``register-worker``, or ``keys``/``peak`` in ``memory-restart``). Here
these become:

- an expected peak per task prefix (the function name part of the key), sent with every
  ``compute-task`` so a worker admits a task only where and when it fits — a freshly
  restarted worker knows at once what its predecessor learned the hard way;
- a count of memory kills per task: at the second, the task fails with
  :class:`~memkube.errors.TaskMemoryError` naming the task, the peak and the limit — at
  the first already when it ran alone on a worker that was near its leanest and no worker
  is larger (a retry cannot go better), and at once when a worker says it cannot fit a
  task whose known peak is above every worker's terminate line.

Placement prefers workers whose limit fits the expected peak. No I/O; the scheduler state
calls in through narrow hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TaskMemoryError
from ..taskspec import prefix_of
from .model import RUNNING, TaskState, WorkerState

if TYPE_CHECKING:
    from .core import SchedulerCore

#: Memory kills of one task after which it fails with TaskMemoryError.
MAX_MEMORY_KILLS = 2
#: A task killed alone fails at once when a fresh worker would give it less than this
#: fraction of the limit more room than it had.
RETRY_GAIN = 0.1


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


class MemoryFit:
    """Prefix peaks and kill counts of one scheduler."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self.kills: dict[str, int] = {}  # task key -> memory kills while it ran

    def expected(self, key: str) -> int | None:
        return self.peaks.get(prefix_of(key))

    def learn(self, key: str, peak: int) -> None:
        prefix = prefix_of(key)
        self.peaks[prefix] = max(peak, self.peaks.get(prefix, 0))

    def finished(self, ts: TaskState, peak: Any) -> None:
        self.kills.pop(ts.key, None)
        if isinstance(peak, int) and not isinstance(peak, bool) and peak >= 0:
            self.learn(ts.key, peak)

    @staticmethod
    def terminate_line(ws: WorkerState) -> int | None:
        """Bytes a task may bring the worker to: its limit times its terminate fraction."""
        limit = ws.memory.get("limit")
        if not isinstance(limit, int) or limit <= 0:
            return None
        frac = (ws.memory.get("thresholds") or {}).get("terminate") or 1.0
        return int(limit * float(frac))

    def fits(self, ts: TaskState, ws: WorkerState) -> bool:
        peak = self.expected(ts.key)
        line = self.terminate_line(ws)
        return peak is None or line is None or peak <= line

    def prefer_fitting(self, ts: TaskState, workers: list[WorkerState]) -> list[WorkerState]:
        fitting = [w for w in workers if self.fits(ts, w)]
        return fitting or workers

    def killed(self, core: SchedulerCore, report: dict[str, Any], worker: str) -> None:
        """A worker was stopped for memory while ``report["keys"]`` ran."""
        keys = [str(k) for k in report.get("keys") or []]
        peak = _int(report.get("peak"))
        task_peak = _int(report.get("task_peak")) or peak
        limit = _int(report.get("limit"))
        reason = str(report.get("reason") or "memory")
        gain = report.get("retry_gain")
        # Alone on a worker that was near its leanest, and no worker is larger: a retry
        # cannot go better, so the first kill is the last.
        hopeless = (len(keys) == 1 and isinstance(gain, int) and limit > 0
                    and gain < RETRY_GAIN * limit and not self._larger_worker(core, limit))
        for key in keys:
            ts = core.tasks.get(key)
            if ts is None:
                continue
            if task_peak:
                self.learn(key, task_peak)
            n = self.kills[key] = self.kills.get(key, 0) + 1
            if (n >= MAX_MEMORY_KILLS or hopeless) and ts.state not in ("memory", "erred"):
                core.log_event("task-memory-error", worker, key)
                self.kills.pop(key, None)
                core._fail(ts, TaskMemoryError(
                    f"task {key!r} needs more memory than a worker has: it reached "
                    f"{_mb(peak)} ({_mb(task_peak)} for itself) in a worker with a memory "
                    f"limit of {_mb(limit)} and was stopped {n} time{"s" if n > 1 else ""} ({reason}) before the "
                    "kernel's OOM killer could act", key, peak, limit))

    def _larger_worker(self, core: SchedulerCore, limit: int) -> bool:
        lines = [self.terminate_line(w) for w in core.workers.values()]
        return any(line is None or line > limit for line in lines)

    def cannot_fit(self, core: SchedulerCore, ts: TaskState, peak: int, limit: int,
                   reason: str) -> bool:
        """A worker refused ``ts`` as too large for it; True if it failed for good."""
        self.learn(ts.key, peak)
        lines = [self.terminate_line(w) for w in core.workers.values() if w.status == RUNNING]
        if any(line is None or line >= peak for line in lines):
            return False
        core._fail(ts, TaskMemoryError(
            f"task {ts.key!r} needs {_mb(peak)} or more at its peak, more than any worker may "
            f"use (memory limit {_mb(limit)}): {reason}", ts.key, peak, limit))
        return True


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
