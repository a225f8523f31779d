"""Graceful retirement: move a worker's unique data elsewhere, then let it exit.

``plan_retirement`` picks the workers (by name, or the ``n`` holding the least unique data),
refuses with :class:`~memkube.errors.RetireError` when the rest of the pool cannot take
their unique data or when ``n`` exceeds the active workers (``n`` equal to them retires
all; names retire exactly those), marks them *retiring* (no new tasks, no new replicas) and asks
receivers to copy every key whose only holders are retiring. Keys are placed by room
(:func:`place_by_room`): spread over the receivers by what each can still take in memory
and on disk (:func:`capacity`), counting the bytes already on their way to it, and never
more than that; what does not fit waits for a later round. ``progress_retirements`` runs
after each relevant event and on every heartbeat while a retirement is under way (so a
copy a receiver failed to fetch is asked for again, from the retiring holder): a retiring
worker with nothing running and every key held elsewhere is told to close; a retirement
is done when all its workers are gone.
``cancel_retirement`` gives one up (a timeout): its workers not yet told to close run again.

No I/O: the scheduler's shell awaits :attr:`Retirement.done` callbacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
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


def place_by_room[K: Hashable, R: Hashable](
        sizes: Mapping[K, int], room: Mapping[R, float],
        pending: Mapping[R, int] | None = None) -> dict[K, R]:
    """Receivers for keys of ``sizes`` bytes, spread by the ``room`` each receiver has left.

    Largest keys first, each to the receiver with the most room left once what it was
    already given (``pending``, then this placement) is counted; ties (e.g. unlimited room)
    go to the receiver given the fewest bytes. A key no receiver has room for is not placed
    (a later round places it when copies confirm and room shows). No receiver is ever given
    more than its room. Pure: keys and receivers are any hashable values.
    """
    given: dict[R, int] = {r: int((pending or {}).get(r, 0)) for r in room}
    left: dict[R, float] = {r: room[r] - given[r] for r in room}
    placed: dict[K, R] = {}
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        nbytes = sizes[key]
        fits = [r for r in room if left[r] >= nbytes]
        if not fits:
            continue
        best = max(fits, key=lambda r: (left[r], -given[r]))
        placed[key] = best
        left[best] -= nbytes
        given[best] += nbytes
    return placed


def _receivers(state: SchedulerCore) -> list[WorkerState]:
    """Workers that may take copies: running ones, and paused ones with room (they take
    them once resumed, onto disk if memory is short)."""
    return [w for w in state.workers.values()
            if w.status == RUNNING or (w.status == "paused" and capacity(w) > 0)]


def _move(state: SchedulerCore, stranded: list[TaskState], leaving: set[WorkerState]) -> None:
    """Ask receivers to copy ``stranded`` keys (those not already on their way), each to
    the receiver with the most room left, counting the bytes of the retiring workers' keys
    already on their way to it."""
    todo = [ts for ts in stranded
            if not any(w.status != RETIRING for w in ts.replicating_to)]
    if not todo:
        return
    receivers = _receivers(state)
    if not receivers:
        return
    pending: dict[WorkerState, int] = dict.fromkeys(receivers, 0)
    for ts in {ts for ws in leaving for ts in ws.has_what}:  # not every task: each heartbeat
        for w in ts.replicating_to:
            if w in pending:
                pending[w] += ts.nbytes
    placed = place_by_room({ts: ts.nbytes for ts in todo},
                           {w: capacity(w) for w in receivers}, pending)
    batches: dict[WorkerState, list[TaskState]] = {}
    for ts, target in placed.items():
        ts.replicating_to.add(target)
        batches.setdefault(target, []).append(ts)
    for target, keys in batches.items():
        state.to_worker(target, {"op": "acquire-replicas",
                                 "who_has": {ts.key: [w.address for w in ts.who_has]
                                             for ts in keys},
                                 "nbytes": {ts.key: ts.nbytes for ts in keys}})


def progress_retirements(state: SchedulerCore) -> None:
    for retirement in list(state.retirements):
        live = [w for w in retirement.workers if w.address in state.workers]
        leaving = set(live)
        for ws in live:
            if ws.address in retirement.closing:
                continue
            stranded = [ts for ts in ws.has_what if ts.who_has <= leaving]
            _move(state, stranded, leaving)
            if not stranded and not ws.processing:
                retirement.closing.add(ws.address)
                state.to_worker(ws, {"op": "close-worker", "reason": "retired"})
        if not live and not retirement.finished:
            retirement.finished = True
            state.retirements.remove(retirement)
            if retirement.on_done is not None:
                retirement.on_done(retirement)
