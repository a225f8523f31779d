"""Direct scatter: the scheduler places, the client sends the bytes to the workers itself.

A client that reaches the workers asks for a plan (``scatter-plan`` with each key's size in
bytes); the scheduler chooses a worker per key, records a *grant* (which keys, for which
client, on which worker, until when) and tells each chosen worker what to expect
(``expect-data``). The client then ``PUT``s each worker's share to ``/scatter/{grant}`` on
that worker; the worker accepts only the keys and sizes the grant names, stores them and
reports them (``scattered-data``), and the scheduler records them as the client's scattered
data (:meth:`~memkube.scheduler.state.SchedulerState.add_scattered`) only where the grant
placed them. No byte of the values passes through the scheduler. Keys the client could not
send this way go through ``POST /api/v1/scatter`` as before.

Pure bookkeeping: no I/O; the shell delivers the messages this module queues.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..protocol import InvalidMessage, Message
from .model import RUNNING

if TYPE_CHECKING:
    from .state import SchedulerState

#: Seconds a grant stays valid, plus the upload's bytes at 4 MiB/s: the client sends right
#: after asking; a grant left unused (the client died, or fell back to the scheduler) is
#: forgotten after this.
GRANT_TTL = 120.0
#: Keys one plan may name; larger scatters ask for several plans.
MAX_PLAN_KEYS = 100_000


@dataclass
class Grant:
    id: str
    client: str
    placement: dict[str, str]  # key -> worker address
    nbytes: dict[str, int]
    expires: float
    received: set[str] = field(default_factory=set)


class ScatterGrants:
    """The grants the scheduler gave, by id."""

    def __init__(self, ttl: float = GRANT_TTL) -> None:
        self.ttl = ttl
        self.grants: dict[str, Grant] = {}

    def expire(self, now: float) -> None:
        for gid in [g.id for g in self.grants.values() if g.expires < now]:
            del self.grants[gid]

    def plan(self, state: SchedulerState, client_id: str, sizes: dict[str, int],
             now: float) -> dict[str, Any]:
        """Place ``sizes`` (key -> bytes) on running workers; queue ``expect-data`` to each.

        Returns ``{"grant": id, "placement": {key: address}}``, with an empty placement when
        no worker runs (the client then uses the scheduler's path, which says why).
        """
        self.expire(now)
        if len(sizes) > MAX_PLAN_KEYS:
            raise InvalidMessage(f"scatter-plan: at most {MAX_PLAN_KEYS} keys per plan",
                                 "scatter-plan")
        for key in sizes:
            ts = state.tasks.get(key)
            if ts is not None and not ts.scattered:
                raise InvalidMessage(f"scatter-plan: key {key[:80]!r} names a task, not "
                                     "scattered data", "scatter-plan")
        workers = [w for w in state.workers.values() if w.status == RUNNING]
        if not workers or not sizes:
            return {"grant": "", "placement": {}}
        largest = max((w.limit or 0) for w in workers)
        if largest and any(n > largest for n in sizes.values()):
            key = next(k for k, n in sizes.items() if n > largest)
            raise InvalidMessage(
                f"scatter-plan: key {key[:80]!r} declares {sizes[key]} bytes, more than any "
                f"worker's memory limit ({largest})", "scatter-plan")
        placement = place(workers, sizes)
        gid = secrets.token_urlsafe(16)
        # long enough for the upload at a slow client's pace (4 MiB/s) on top
        ttl = self.ttl + sum(sizes.values()) / (4 << 20)
        self.grants[gid] = Grant(gid, client_id, placement, dict(sizes), now + ttl)
        by_worker: dict[str, dict[str, int]] = {}
        for key, address in placement.items():
            by_worker.setdefault(address, {})[key] = sizes[key]
        for address, share in by_worker.items():
            state.to_worker(state.workers[address], {
                "op": "expect-data", "grant": gid, "client": client_id, "keys": share,
                "ttl": ttl})
        return {"grant": gid, "placement": placement}

    def received(self, state: SchedulerState, address: str, msg: Message,
                 now: float) -> list[str]:
        """A worker stored keys of a grant: record those the grant placed there.

        Returns the keys refused (not in the grant, placed elsewhere, already received, or
        the grant expired); the shell tells the worker to free them.
        """
        grant = self.grants.get(msg["grant"])
        sizes: dict[str, int] = msg["keys"]
        raw_types = msg.get("types")
        types: dict[str, Any] = raw_types if isinstance(raw_types, dict) else {}
        if grant is None or grant.expires < now:
            return list(sizes)
        accepted: dict[str, dict[str, Any]] = {}
        refused: list[str] = []
        for key, nbytes in sizes.items():
            if grant.placement.get(key) != address or key in grant.received:
                refused.append(key)
                continue
            grant.received.add(key)
            accepted[key] = {"nbytes": nbytes, "type": str(types.get(key, ""))[:200],
                             "workers": [address]}
        if accepted:
            state.add_scattered(grant.client, accepted)
        if len(grant.received) == len(grant.placement):
            del self.grants[grant.id]
        return refused


def place(workers: list[Any], sizes: dict[str, int]) -> dict[str, str]:
    """A worker per key: largest keys first, each to the worker with the most room left
    (by memory fraction when workers have limits, else by bytes held)."""
    projected = {w.address: float(w.memory_fraction()) if w.limit else float(w.nbytes)
                 for w in workers}
    scale = {w.address: (1.0 / w.limit) if w.limit else 1.0 for w in workers}
    placement: dict[str, str] = {}
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        address = min(projected, key=lambda a: projected[a])
        placement[key] = address
        projected[address] += sizes[key] * scale[address]
    return placement
