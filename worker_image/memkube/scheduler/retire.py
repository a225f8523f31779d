"""Graceful retirement: move a worker's unique data elsewhere, then let it exit.

``plan_retirement`` picks the workers (by name, or the ``n`` holding the least unique data),
refuses with :class:`~memkube.errors.RetireError` when the rest of the pool cannot take
their unique data or when ``n`` exceeds the active workers (``n`` equal to them retires
all; names retire exactly those), marks them *retiring* (no new tasks, no new replicas) and asks
receivers to copy every key whose only holders are retiring. ``progress_retirements`` runs
after each relevant event: a retiring worker with nothing running and every key held
elsewhere is told to close; a retirement is done when all its workers are gone.
``cancel_retirement`` gives one up (a timeout): its workers not yet told to close run again.

No I/O: the scheduler's shell awaits :attr:`Retirement.done` callbacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import RetireError
from .model import RETIRING, RUNNING, TaskState, WorkerState

if TYPE_CHECKING:
    from .core import SchedulerCore


@dataclass(eq=False)
class Retirement:
    workers: list[WorkerState]
    unknown: list[str] = field(default_factory=list)  # names no connected worker has
    closing: set[str] = field(default_factory=set)  # addresses told to close
    finished: bool = False
    on_done: Callable[[Retirement], None] | None = None

    def describe(self) -> dict[str, object]:
        return {"retired": [{"name": w.name, "address": w.address} for w in self.workers],
                "unknown": list(self.unknown)}


def capacity(ws: WorkerState) -> float:
    """Bytes ``ws`` can still take in memory (up to pause) plus on disk (up to max-spill)."""
    limit = ws.limit
    if not limit:
        return math.inf
    figures = ws.memory
    pause = (figures.get("thresholds") or {}).get("pause") or 1.0
    in_memory = max(0.0, pause * limit - ws.memory_fraction() * limit)
    max_spill = figures.get("max_spill")
    if max_spill is None:
        return math.inf
    return in_memory + max(0, int(max_spill) - int(figures.get("spilled", 0)))


def plan_retirement(state: SchedulerCore, *, names: list[str] | None = None,
                    n: int | None = None) -> Retirement:
    active = [w for w in state.workers.values() if w.status != RETIRING]
    unknown: list[str] = []
    if names is not None:
        by_name = {w.name: w for w in state.workers.values()}
        chosen = []
        for name in names:
            ws = by_name.get(name)
            if ws is None:
                unknown.append(name)
            elif ws.status != RETIRING:
                chosen.append(ws)
    elif n is not None:
        if n < 0:
            raise RetireError("n must be >= 0")
        if n > len(active):
            # A count larger than the pool is a mistake (a stale view of the pool), not a
            # request to retire everything: name the workers to retire them all.
            raise RetireError(f"cannot retire {n} workers: only {len(active)} are active "
                              "(nothing was retired)")
        chosen = sorted(active, key=lambda w: (state.unique_bytes(w), len(w.has_what)))[:n]
    else:
        raise RetireError("give worker names or a count")
    receivers = [w for w in active if w not in chosen]
    leaving = set(chosen)
    must_move = _keys_to_move(leaving)
    needed = sum(ts.nbytes for ts in must_move)
    if must_move and not receivers:
        raise RetireError(
            f"no worker would remain to hold {len(must_move)} keys ({needed} bytes) "
            "that only the retiring workers have")
    room = sum(capacity(w) for w in receivers)
    if needed > room:
        raise RetireError(
            f"the remaining workers can take {int(room)} bytes, but the retiring workers "
            f"hold {needed} bytes that exist nowhere else")
    retirement = Retirement(chosen, unknown)
    for ws in chosen:
        ws.status = RETIRING
        state.log_event("retiring", ws.name, "graceful retirement requested")
    state.retirements.append(retirement)
    progress_retirements(state)
    return retirement


def cancel_retirement(state: SchedulerCore, retirement: Retirement) -> list[str]:
    """Give up ``retirement`` (it timed out, or its caller left): its workers that were not
    yet told to close run again and will not be closed later. Returns the names of those
    already told to close: their data is elsewhere and they exit regardless."""
    if retirement in state.retirements:
        state.retirements.remove(retirement)
    retirement.finished = True
    closing = []
    for ws in retirement.workers:
        if ws.address not in state.workers:
            continue
        if ws.address in retirement.closing:
            closing.append(ws.name)
        elif ws.status == RETIRING:
            ws.status = RUNNING
            state.log_event("retire-cancelled", ws.name, "the retirement was given up")
    state.workers_available()
    return closing


def _keys_to_move(leaving: set[WorkerState]) -> set[TaskState]:
    return {ts for ws in leaving for ts in ws.has_what if ts.who_has <= leaving}


def _move(state: SchedulerCore, ts: TaskState) -> None:
    """Ask the emptiest running worker to copy ``ts`` unless a copy is already on its way."""
    if any(w.status != RETIRING for w in ts.replicating_to):
        return
    targets = [w for w in state.workers.values() if w.status == RUNNING or (
        w.status == "paused" and capacity(w) > ts.nbytes)]
    if not targets:
        return
    target = min(targets, key=lambda w: (w.memory_fraction(), w.nbytes))
    ts.replicating_to.add(target)
    state.to_worker(target, {"op": "acquire-replicas",
                             "who_has": {ts.key: [w.address for w in ts.who_has]},
                             "nbytes": {ts.key: ts.nbytes}})


def progress_retirements(state: SchedulerCore) -> None:
    for retirement in list(state.retirements):
        live = [w for w in retirement.workers if w.address in state.workers]
        leaving = set(live)
        for ws in live:
            if ws.address in retirement.closing:
                continue
            stranded = [ts for ts in ws.has_what if ts.who_has <= leaving]
            for ts in stranded:
                _move(state, ts)
            if not stranded and not ws.processing:
                retirement.closing.add(ws.address)
                state.to_worker(ws, {"op": "close-worker", "reason": "retired"})
        if not live and not retirement.finished:
            retirement.finished = True
            state.retirements.remove(retirement)
            if retirement.on_done is not None:
                retirement.on_done(retirement)
