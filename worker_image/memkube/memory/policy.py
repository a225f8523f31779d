"""The memory policy: a state machine from memory readings to actions, with no I/O.

Given a :class:`Reading` (process RSS, the cgroup's working set and limit, managed, spillable
and spilled bytes, whether the spill store is full) :meth:`MemoryPolicy.step` returns what
to do, as fractions of the worker's memory limit:

- above ``spill`` (or managed above ``target``): :class:`Spill` least-recently-used values
  until memory is back under ``target`` (hysteresis: spilling continues below ``spill``);
- above ``pause``, or when values cannot be spilled because the store is full:
  :class:`Pause`; :class:`Resume` once below ``pause - resume_margin`` for
  ``resume_after`` seconds and spillable again (hysteresis in bytes and in time);
- paused with nothing left to spill (unmanaged memory): after ``gc_after`` seconds
  :class:`CollectGarbage`, after ``trim_after`` :class:`TrimMalloc`, after
  ``terminate_after`` :class:`Terminate` — or, with that disabled, a :class:`Warn` every
  ``warn_every`` seconds, never a silent pause forever;
- above ``terminate``: first :class:`Spill` of everything spillable (and :class:`Pause`);
  :class:`Terminate` (once) only when memory is still above it with nothing left to spill
  ``settle`` seconds on, or climbs ``climb`` of the limit further meanwhile (the buffers of
  a transfer and serialization copies are not spillable, and are freed within that).

The memory measure is the larger of RSS / limit and cgroup working set / cgroup limit: the
OOM killer counts the cgroup, which may hold more than this process. Time comes in the
readings, so tests drive the policy without sleeping. Not covered: taking readings and
carrying out actions (``manager.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["normal", "spilling", "paused"]


@dataclass(frozen=True)
class Thresholds:
    """Fractions of the memory limit; None disables one."""

    target: float | None = 0.6  # managed bytes kept under this; spill down to it
    spill: float | None = 0.7  # process memory: start spilling
    pause: float | None = 0.8  # process memory: start no task, accept no transfer
    terminate: float | None = 0.95  # process memory: restart the worker

    @property
    def all_disabled(self) -> bool:
        """Every threshold off: the memory manager is switched off (nothing spills or acts)."""
        return all(t is None for t in (self.target, self.spill, self.pause, self.terminate))

    @property
    def intake_line(self) -> float:
        """Beyond this fraction the worker takes no new task input or transfer: pause, else
        terminate, else the limit itself."""
        return next((f for f in (self.pause, self.terminate) if f is not None), 1.0)

    @property
    def run_line(self) -> float:
        """What running tasks may bring memory to: terminate, else pause, else the limit."""
        return next((f for f in (self.terminate, self.pause) if f is not None), 1.0)


@dataclass(frozen=True)
class Escalation:
    """What to do, in seconds since it began, while paused on memory spilling cannot free."""

    gc_after: float = 1.0
    trim_after: float = 3.0
    terminate_after: float | None = 60.0  # None: keep warning instead of restarting
    warn_every: float = 30.0


@dataclass(frozen=True)
class Reading:
    """One measurement; ``time`` is a monotonic clock in seconds."""

    time: float
    process: int  # RSS of the worker process
    managed: int  # bytes of values held in memory
    spillable: int  # of which spilling could free
    spilled: int = 0
    spill_full: bool = False
    cgroup_usage: int | None = None  # working set of the process's cgroup
    cgroup_limit: int | None = None


@dataclass(frozen=True)
class Spill:
    nbytes: int  # free at least this many bytes of managed memory


@dataclass(frozen=True)
class Pause:
    reason: str


@dataclass(frozen=True)
class Resume:
    reason: str


@dataclass(frozen=True)
class CollectGarbage:
    pass


@dataclass(frozen=True)
class TrimMalloc:
    pass


@dataclass(frozen=True)
class Terminate:
    reason: str


@dataclass(frozen=True)
class Warn:
    message: str


Action = Spill | Pause | Resume | CollectGarbage | TrimMalloc | Terminate | Warn


class MemoryPolicy:
    """Feed readings to :meth:`step`; act on the returned actions in order."""

    def __init__(
        self,
        limit: int | None,
        thresholds: Thresholds = Thresholds(),
        escalation: Escalation = Escalation(),
        *,
        resume_margin: float = 0.05,
        resume_after: float = 0.1,
        settle: float = 0.5,
        climb: float = 0.03,
    ) -> None:
        self.limit = limit
        self.thresholds = thresholds
        self.escalation = escalation
        self.resume_margin = resume_margin
        self.resume_after = resume_after  # seconds below the resume line before resuming
        self.settle = settle  # seconds above terminate, nothing to spill, before Terminate
        self.climb = climb  # of the limit: climbing this much above terminate: at once
        self._over: tuple[float, float] | None = None  # (since, fraction): above terminate
        self._below_since: float | None = None
        self.paused = False
        self.terminated = False
        self._spilling = False
        self._stuck_since: float | None = None
        self._escalated = 0  # 1: gc done, 2: trim done, 3: terminate or warned
        self._last_warn = 0.0
        self.state: State = "normal"

    @property
    def resume_pending(self) -> bool:
        """Paused, and below the resume line since a reading: the next one may resume."""
        return self.paused and self._below_since is not None

    def fraction(self, r: Reading) -> float:
        """Memory in use as a fraction of the limit, the worse of process and cgroup."""
        assert self.limit is not None
        frac = r.process / self.limit
        if r.cgroup_usage is not None and r.cgroup_limit:
            frac = max(frac, r.cgroup_usage / r.cgroup_limit)
        return frac

    def step(self, r: Reading) -> list[Action]:
        if self.limit is None or self.terminated:
            return []
        t = self.thresholds
        frac = self.fraction(r)
        if t.terminate is not None and frac >= t.terminate:
            actions: list[Action] = []
            if r.spillable > 0 and not r.spill_full:
                # Escalate before restarting: spill everything that can be, pause, and
                # restart only if memory is still above the line once that is done.
                actions.append(Spill(r.spillable))
                self._over = None
                why = "spilling all"
            else:
                if self._over is None:  # the first reading of this stay above the line
                    self._over = (r.time, frac)
                since, first = self._over
                if r.time - since >= self.settle or frac >= first + self.climb:
                    self.terminated = True
                    return [Terminate(f"memory at {frac:.0%} of the limit, terminate "
                                      f"threshold {t.terminate:.0%}, with nothing left to spill")]
                why = "nothing left to spill"
            if not self.paused:
                self.paused = True
                actions.append(Pause(f"memory at {frac:.0%} of the limit, above the terminate "
                                     f"threshold {t.terminate:.0%}: {why}"))
            self._below_since = None
            self.state = "paused"
            return actions
        self._over = None
        actions = []
        need = self._spill_need(r, frac)
        if need > 0 and r.spillable > 0 and not r.spill_full:
            actions.append(Spill(min(need, r.spillable)))
        actions.extend(self._pause_or_resume(r, frac))
        actions.extend(self._escalate(r))
        self.state = "paused" if self.paused else "spilling" if need > 0 else "normal"
        return actions

    def _spill_need(self, r: Reading, frac: float) -> int:
        assert self.limit is not None
        t = self.thresholds
        if t.spill is not None and frac >= t.spill:
            self._spilling = True
        need = 0
        if self._spilling:
            goal = t.target if t.target is not None else t.spill
            assert goal is not None
            need = int((frac - goal) * self.limit)
            if need <= 0:
                self._spilling = False
        if t.target is not None:
            need = max(need, r.managed - int(t.target * self.limit))
        return max(0, need)

    def _blocked_by_full_store(self, r: Reading) -> bool:
        target = self.thresholds.target
        return r.spill_full and target is not None and r.managed > target * (self.limit or 0)

    def _pause_or_resume(self, r: Reading, frac: float) -> list[Action]:
        pause = self.thresholds.pause
        if not self.paused:
            if pause is not None and frac >= pause:
                self.paused = True
                return [Pause(f"memory at {frac:.0%} of the limit, pause threshold {pause:.0%}")]
            if self._blocked_by_full_store(r):
                self.paused = True
                return [Pause("spill store full with managed memory above target")]
            return []
        below = pause is None or frac < pause - self.resume_margin
        if not below or self._blocked_by_full_store(r):
            self._below_since = None
            return []
        if self._below_since is None:
            self._below_since = r.time
        # hysteresis in time as well as in bytes: a dip for one reading does not resume
        if r.time - self._below_since >= self.resume_after:
            self._below_since = None
            self.paused = False
            self._stuck_since = None
            return [Resume(f"memory at {frac:.0%} of the limit")]
        return []

    def _escalate(self, r: Reading) -> list[Action]:
        stuck = self.paused and (r.spillable == 0 or r.spill_full)
        if not stuck:
            self._stuck_since = None
            return []
        if self._stuck_since is None:
            self._stuck_since = r.time
            self._escalated = 0
        elapsed = r.time - self._stuck_since
        e = self.escalation
        actions: list[Action] = []
        if self._escalated == 0 and elapsed >= e.gc_after:
            self._escalated = 1
            actions.append(CollectGarbage())
        if self._escalated == 1 and elapsed >= e.trim_after:
            self._escalated = 2
            actions.append(TrimMalloc())
        if self._escalated >= 2:
            what = (
                f"paused for {elapsed:.0f}s on memory that spilling cannot free "
                f"({r.process} bytes in the process, {r.managed} managed)"
            )
            if e.terminate_after is not None:
                if elapsed >= e.terminate_after:
                    self.terminated = True
                    actions.append(Terminate(what))
            elif self._escalated == 2 or r.time - self._last_warn >= e.warn_every:
                self._escalated = 3
                self._last_warn = r.time
                actions.append(Warn(what))
        return actions
