"""What the guard does about a reading: no I/O, time in the readings.

Lines, as fractions of the worker's ``limit`` (its ``--memory-limit``), with the kill line
also below the cgroup's hard limit where one is known:

- at or above ``terminate``: :class:`RequestSpill` (the worker spills all it can, in a
  thread of its own) — once per crossing;
- once the worker answered: still at or above ``terminate`` ``settle`` seconds on (a
  transfer's buffers and serialization copies are not spillable, and are freed within
  that), or climbing ``climb`` × limit above the first reading after the answer:
  :class:`Kill`; memory falling below the line ends the episode (the next crossing asks
  again);
- before the answer, without the worker's acknowledgement (``spilling``, sent before it
  starts spilling; without it a task holds the worker's interpreter, so nothing is being
  spilled): memory climbing ``climb`` × limit further, or ``spill_wait`` seconds:
  :class:`Kill`; with it, while the worker spills (memory may still rise as a task
  allocates next to it, until the spill outruns it): memory reaching ``kill`` × limit,
  or ``spill_time`` seconds (a disk that stalls): :class:`Kill`;
- at or above the kill line at any time: :class:`Kill` at once. The kill line is
  ``kill`` × limit of the child's RSS, and, with a cgroup limit, the cgroup's usage within
  ``cgroup_margin`` of it: the kernel's OOM killer acts at that limit, the guard just before.

It also keeps which tasks run (from the worker's notices) and the peak since the oldest of
them started, for the kill report the scheduler gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GuardConfig:
    limit: int | None  # the worker's memory limit, bytes (None: no limit, nothing to guard)
    terminate: float | None = 0.95
    kill: float = 1.0  # of the limit, child RSS: kill at once (without a cgroup limit)
    cgroup_limit: int | None = None  # the hard limit the kernel enforces, if any
    cgroup_margin: float = 0.05  # kill when cgroup usage is this close (fraction) to it
    spill_wait: float = 0.5  # seconds to wait for the worker's answer to a spill request
    climb: float = 0.03  # of the limit: still climbing this much above the line: kill
    settle: float = 0.5  # seconds memory may stay above the line after the worker's answer
    spill_time: float = 10.0  # seconds an acknowledged spill request may take

    @property
    def kill_rss(self) -> int | None:
        if self.limit is None:
            return None
        if self.cgroup_limit is not None:
            return None  # the cgroup line below is the real one
        return int(self.kill * self.limit)

    @property
    def kill_cgroup(self) -> int | None:
        if self.cgroup_limit is None:
            return None
        return int(self.cgroup_limit * (1 - self.cgroup_margin))


@dataclass(frozen=True)
class GuardReading:
    time: float
    rss: int  # of the worker's process tree
    cgroup_usage: int | None = None  # working set of the cgroup (worker and guard)


@dataclass(frozen=True)
class RequestSpill:
    pass


@dataclass(frozen=True)
class Kill:
    reason: str
    report: dict[str, object] = field(default_factory=dict)


GuardAction = RequestSpill | Kill


class GuardPolicy:
    """Feed :meth:`step` readings and the worker's notices; act on what it returns."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.running: dict[str, int] = {}  # task key -> RSS when it started
        self.peak = 0  # highest RSS since the oldest running task started
        self.idle: int | None = None  # RSS of this worker before its first task: its leanest
        self.kills = 0
        self.spill_requests = 0
        self._asked_at: float | None = None
        self._asked_rss = 0
        self._answered_at: float | None = None
        self._acked_at: float | None = None
        self._settle_rss: int | None = None  # the first reading after the answer
        self._done = False

    # notices from the worker

    def child_started(self) -> None:
        self.running.clear()
        self.peak = 0
        self.idle = None
        self._end_episode()
        self._done = False

    def task_started(self, key: str, rss: int) -> None:
        if not self.running:
            self.peak = rss
        if self.idle is None:
            self.idle = rss
        self.running[key] = rss

    def task_stopped(self, key: str) -> None:
        self.running.pop(key, None)

    def _end_episode(self, asked_at: float | None = None, asked_rss: int = 0) -> None:
        """Forget the last crossing's request and its replies; ``asked_at``: a new one."""
        self._asked_at, self._asked_rss = asked_at, asked_rss
        self._answered_at = self._acked_at = None
        self._settle_rss = None

    def spill_acknowledged(self, now: float) -> None:
        self._acked_at = now

    def spill_answered(self, now: float) -> None:
        self._answered_at = now

    # readings

    def step(self, r: GuardReading) -> list[GuardAction]:
        c = self.config
        if c.limit is None or self._done:
            return []
        self.peak = max(self.peak, r.rss)
        if c.kill_rss is not None and r.rss >= c.kill_rss:
            return [self._kill(f"worker memory {r.rss / 1e6:.0f} MB reached the kill line "
                               f"{c.kill_rss / 1e6:.0f} MB", r)]
        if c.kill_cgroup is not None and r.cgroup_usage is not None and (
                r.cgroup_usage >= c.kill_cgroup):
            return [self._kill(f"cgroup memory {r.cgroup_usage / 1e6:.0f} MB within "
                               f"{c.cgroup_margin:.0%} of its hard limit "
                               f"{(c.cgroup_limit or 0) / 1e6:.0f} MB", r)]
        if c.terminate is None:
            return []
        line = c.terminate * c.limit
        if r.rss < line:
            # well below, or below once the worker answered (what was left above the line
            # was transient): a new crossing asks again
            if r.rss < line * 0.95 or self._answered_at is not None:
                self._end_episode()
            return []
        if self._asked_at is None:
            self._end_episode(r.time, r.rss)  # replies to an earlier request do not count
            self.spill_requests += 1
            return [RequestSpill()]
        if self._answered_at is not None:
            if self._settle_rss is None:
                self._settle_rss = r.rss
            if r.time - self._answered_at >= c.settle:
                return [self._kill(
                    f"worker memory {r.rss / 1e6:.0f} MB still above the terminate line "
                    f"{line / 1e6:.0f} MB {c.settle} s after spilling everything", r)]
            if r.rss >= self._settle_rss + c.climb * c.limit:
                return [self._kill(
                    f"worker memory {r.rss / 1e6:.0f} MB still climbing above the terminate "
                    f"line {line / 1e6:.0f} MB after spilling everything", r)]
            return []
        if self._acked_at is None:  # no reply at all: a task may hold the interpreter
            if r.rss >= self._asked_rss + c.climb * c.limit:
                return [self._kill(
                    f"worker memory {r.rss / 1e6:.0f} MB still climbing above the terminate "
                    f"line {line / 1e6:.0f} MB, the spill request unanswered (a task holds "
                    "the interpreter)", r)]
            if r.time - self._asked_at >= c.spill_wait:
                return [self._kill(
                    f"worker memory {r.rss / 1e6:.0f} MB above the terminate line and no "
                    f"answer to a spill request in {c.spill_wait} s", r)]
            return []
        # acknowledged: the worker is spilling, and a task may still allocate beside it
        if r.rss >= c.kill * c.limit:
            return [self._kill(f"worker memory {r.rss / 1e6:.0f} MB reached its limit "
                               f"{c.limit / 1e6:.0f} MB while it spilled", r)]
        if r.time - self._asked_at >= c.spill_time:
            return [self._kill(f"worker memory {r.rss / 1e6:.0f} MB above the terminate line "
                               f"and the spill not done in {c.spill_time} s", r)]
        return []

    def _kill(self, reason: str, r: GuardReading) -> Kill:
        self._done = True
        self.kills += 1
        baseline = min(self.running.values(), default=r.rss)
        return Kill(reason, self.report(reason, baseline))

    def report(self, reason: str, baseline: int | None = None) -> dict[str, object]:
        """What the scheduler learns: running keys, the peak and the task's share of it."""
        if baseline is None:
            baseline = min(self.running.values(), default=self.peak)
        idle = self.idle if self.idle is not None else baseline
        return {"keys": list(self.running), "peak": self.peak,
                "task_peak": max(0, self.peak - baseline), "limit": self.config.limit or 0,
                "reason": reason,
                # what a fresh worker would have had on top: retrying gains at most this
                "retry_gain": max(0, baseline - idle)}
