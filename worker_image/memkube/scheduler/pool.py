"""The pool snapshot: one JSON-ready view of the scheduler for the API, dashboard and operator.

The shape is the contract in ``docs/internals.md`` ("Scheduler HTTP API", ``/api/v1/pool``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .replication import shortfall

if TYPE_CHECKING:
    from .server import Scheduler


def pool_snapshot(scheduler: Scheduler) -> dict[str, Any]:
    state = scheduler.state
    workers = []
    totals = {"limit": 0, "managed": 0, "unmanaged": 0, "spilled": 0}
    now_wall, now_mono = time.time(), state.clock()
    for ws in state.workers.values():
        memory = dict(ws.memory)
        status = ws.status
        if status == "running" and memory.get("paused"):
            status = "paused"
        workers.append({
            "name": ws.name, "address": ws.address, "host": ws.host, "node": ws.node,
            "pid": ws.pid, "nthreads": ws.nthreads, "status": status, "memory": memory,
            "memory_restarts": ws.memory_restarts,
            "tasks": {"executing": ws.executing, "ready": ws.ready,
                      "processing": len(ws.processing)},
            "keys": len(ws.has_what), "nbytes": ws.nbytes,
            "last_seen": now_wall - (now_mono - ws.last_seen),
        })
        for field in ("limit", "managed", "unmanaged", "spilled"):
            totals[field] += int(memory.get(field) or 0)
    return {
        "scheduler": {"address": scheduler.address,
                      "dashboard": scheduler.http_address + "/dashboard/",
                      "started": scheduler.started},
        "workers": workers,
        "memory": totals,
        "tasks": state.task_counts(),
        "replication": {"factor": state.replication_factor, "shortfall": shortfall(state)},
        "clients": len(state.clients),
        "proxied_bytes": {**scheduler.proxied_bytes, "inline": state.inlined_bytes},
        "events": list(state.events[-200:]),
    }
