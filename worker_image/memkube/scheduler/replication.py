"""Replication policy: how many copies a key keeps, where they go, when surplus goes.

Rules (ARCHITECTURE.md, "Data lifetime"):
- keys that clients hold, and all scattered data, keep ``replication_factor`` copies (more
  when ``client.replicate(n=)`` asked); other keys need one;
- copies go to distinct workers, preferring distinct nodes where workers report one; a
  replica goes only to a running worker below its memory target;
- under memory pressure a worker's surplus replicas are dropped before anything is
  spilled; the last copy of a key is never dropped.

Functions here act on a :class:`~memkube.scheduler.core.SchedulerCore` through its outbox;
they perform no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import MEMORY, RETIRING, RUNNING, TaskState, WorkerState

if TYPE_CHECKING:
    from .core import SchedulerCore


def replicate_key(state: SchedulerCore, ts: TaskState) -> None:
    """Ask workers to fetch copies until ``ts`` has its desired number (or none can)."""
    if ts.state != MEMORY or not ts.who_has:
        state.underreplicated.discard(ts)
        return
    missing = state.desired_replicas(ts) - len(ts.who_has) - len(ts.replicating_to)
    if missing <= 0:
        state.underreplicated.discard(ts)
        return
    for ws in choose_replica_targets(state, ts, missing):
        ts.replicating_to.add(ws)
        state.to_worker(ws, {"op": "acquire-replicas",
                             "who_has": {ts.key: [w.address for w in ts.who_has]},
                             "nbytes": {ts.key: ts.nbytes}})
        missing -= 1
    if missing > 0:
        state.underreplicated.add(ts)
    else:
        state.underreplicated.discard(ts)


def choose_replica_targets(state: SchedulerCore, ts: TaskState, count: int) -> list[WorkerState]:
    """Up to ``count`` workers to hold new copies of ``ts``, best first."""
    taken = ts.who_has | ts.replicating_to
    used_nodes = {w.node for w in taken if w.node}
    candidates = [
        w for w in state.workers.values()
        if w.status == RUNNING and w not in taken and w.below_target()
    ]
    chosen: list[WorkerState] = []
    for _ in range(count):
        if not candidates:
            break
        # Distinct nodes first (a node loss takes all its workers), then the emptiest worker.
        best = min(candidates, key=lambda w: (
            bool(w.node) and w.node in used_nodes, w.memory_fraction(), len(w.has_what)))
        candidates.remove(best)
        chosen.append(best)
        if best.node:
            used_nodes.add(best.node)
    return chosen


def drop_surplus_replicas(state: SchedulerCore, ws: WorkerState) -> list[str]:
    """Free surplus copies on a worker above its memory target, largest first.

    Returns the keys dropped. A key is surplus on ``ws`` when it has more copies than it
    needs and no task running on ``ws`` is about to read it.
    """
    limit = ws.limit
    target = (ws.memory.get("thresholds") or {}).get("target")
    if not limit or target is None or ws.below_target() or ws.status == RETIRING:
        return []  # a retiring worker serves its copies until they are all elsewhere
    excess = ws.memory_fraction() * limit - float(target) * limit
    dropped: list[str] = []
    for ts in sorted(ws.has_what, key=lambda t: -t.nbytes):
        if excess <= 0:
            break
        # Copies on retiring workers do not count: they are about to go (a fresh copy a
        # retirement moved here is the one that stays).
        staying = [w for w in ts.who_has if w is not ws and w.status != RETIRING]
        if len(staying) < max(1, state.desired_replicas(ts)):
            continue
        if any(d.processing_on is ws for d in ts.dependents):
            continue
        state.remove_replica(ts, ws)
        dropped.append(ts.key)
        excess -= ts.nbytes
    if dropped:
        state.to_worker(ws, {"op": "free-keys", "keys": dropped})
    return dropped


def shortfall(state: SchedulerCore) -> int:
    """Copies missing across the pool (for metrics and status)."""
    return sum(
        max(0, state.desired_replicas(ts) - len(ts.who_has))
        for ts in state.tasks.values() if ts.state == MEMORY
    )
