"""Status derivation: phase, counts, conditions and figures, computed without I/O.

:func:`derive_status` builds the whole ``status`` block from what one reconcile saw; the
reconciler merges it in with one patch. Conditions keep their ``lastTransitionTime`` while
their status does not change, as the Kubernetes API conventions ask.

Not covered: counting OOM kills across reconciles (:mod:`reconcile` keeps the tally).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from . import naming
from .observe import PodView
from .plan import Plan, live_workers
from .translate import DerivedStatus

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """One entry of ``status.conditions``."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class PoolMemory(TypedDict):
    """``status.memory``: pool totals from the scheduler, in bytes."""

    managed: int
    unmanaged: int
    spilled: int


class PoolStatus(TypedDict):
    """The ``status`` the operator writes."""

    phase: str
    observedGeneration: int
    conditions: list[Condition]
    replicas: NotRequired[int]
    readyReplicas: NotRequired[int]
    updatedReplicas: NotRequired[int]
    selector: NotRequired[str]
    schedulerAddress: NotRequired[str]
    dashboardUrl: NotRequired[str]
    derived: NotRequired[DerivedStatus]
    memory: NotRequired[PoolMemory]
    oomKills: NotRequired[int]
    oomRecorded: NotRequired[dict[str, int]]
    scaleDown: NotRequired[dict[str, str] | None]


@dataclass(frozen=True)
class Observation:
    """What one reconcile saw and decided."""

    pool: str
    namespace: str
    generation: int
    replicas: int
    desired_hash: str
    workers: Sequence[PodView]
    scheduler_ready: bool
    snapshot: Mapping[str, Any] | None
    scheduler_error: str | None
    plan: Plan
    oom_kills: int
    new_ooms: Sequence[str]


def condition(
    previous: Sequence[Mapping[str, Any]],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int,
    now: str,
) -> Condition:
    """A condition whose transition time only moves when its status changes."""
    since = now
    for old in previous:
        if old.get("type") == kind and old.get("status") == status:
            since = str(old.get("lastTransitionTime") or now)
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        lastTransitionTime=since,
        observedGeneration=generation,
    )


def pool_memory(snapshot: Mapping[str, Any]) -> PoolMemory:
    """Pool totals from a ``GET /api/v1/pool`` snapshot."""
    memory = snapshot.get("memory") or {}
    return PoolMemory(
        managed=int(memory.get("managed", 0)),
        unmanaged=int(memory.get("unmanaged", 0)),
        spilled=int(memory.get("spilled", 0)),
    )


def _memory_pressure(snapshot: Mapping[str, Any] | None) -> tuple[ConditionStatus, str, str]:
    if snapshot is None:
        return "Unknown", "SchedulerUnreachable", "no memory figures from the scheduler"
    paused = [w["name"] for w in snapshot.get("workers", []) if w.get("status") == "paused"]
    spilling = [
        w["name"]
        for w in snapshot.get("workers", [])
        if (w.get("memory") or {}).get("state") == "spilling"
    ]
    if paused:
        return "True", "WorkersPaused", f"paused above the pause threshold: {', '.join(paused)}"
    if spilling:
        return "True", "WorkersSpilling", f"spilling to disk: {', '.join(spilling)}"
    return "False", "BelowThresholds", "every worker is below its spill threshold"


def derive_status(
    obs: Observation,
    derived: DerivedStatus,
    previous: Mapping[str, Any],
    *,
    now: str,
) -> PoolStatus:
    """The full status for a valid spec."""
    live = live_workers(obs.workers)
    ready = sum(1 for p in live if p.ready)
    updated = sum(1 for p in live if p.spec_hash == obs.desired_hash)
    old = list(previous.get("conditions") or [])
    gen = obs.generation

    def cond(kind: str, status: ConditionStatus, reason: str, message: str) -> Condition:
        return condition(old, kind, status, reason, message, generation=gen, now=now)

    all_ready = obs.scheduler_ready and ready == obs.replicas == len(live)
    if not obs.scheduler_ready:
        ready_cond = cond("Ready", "False", "SchedulerNotReady", "the scheduler pod is not ready")
    elif all_ready:
        ready_cond = cond("Ready", "True", "AllWorkersReady", f"{ready}/{obs.replicas} ready")
    else:
        ready_cond = cond("Ready", "False", "WorkersNotReady", f"{ready}/{obs.replicas} ready")

    phase, progressing = _progress(obs, len(live), updated, cond)
    pressure = cond("MemoryPressure", *_memory_pressure(obs.snapshot))
    if obs.new_ooms:
        degraded = cond(
            "Degraded",
            "True",
            "OOMKilled",
            f"the kernel OOM-killed {', '.join(obs.new_ooms)}; raise memoryOverhead",
        )
    elif obs.scheduler_error and obs.plan.retires:
        degraded = cond("Degraded", "True", "SchedulerUnreachable", obs.scheduler_error)
    else:
        degraded = cond("Degraded", "False", "Healthy", "no OOM kills since the last reconcile")
    if degraded["status"] == "True" and phase == "Running":
        phase = "Degraded"
    if phase == "Running" and not all_ready:
        phase = "Pending"
    status = PoolStatus(
        phase=phase,
        observedGeneration=gen,
        conditions=[ready_cond, progressing, pressure, degraded],
        replicas=len(live),
        readyReplicas=ready,
        updatedReplicas=updated,
        selector=naming.selector(obs.pool, naming.WORKER),
        schedulerAddress=naming.scheduler_address(obs.pool, obs.namespace),
        dashboardUrl=naming.dashboard_url(obs.pool, obs.namespace),
        derived=derived,
        oomKills=obs.oom_kills,
    )
    if obs.snapshot is not None:
        status["memory"] = pool_memory(obs.snapshot)
    return status


def _progress(obs: Observation, live: int, updated: int, cond: Any) -> tuple[str, Condition]:
    plan = obs.plan
    if plan.waiting is not None or (obs.scheduler_error and plan.retires):
        message = plan.waiting or f"scale-down waits, nothing deleted: {obs.scheduler_error}"
        reason = "ScaleDownWaiting" if live > obs.replicas else "Waiting"
        return "Scaling" if live != obs.replicas else "Updating", cond(
            "Progressing", "True", reason, message
        )
    if live < obs.replicas:
        return "Scaling", cond("Progressing", "True", "ScalingUp", f"{live}/{obs.replicas} pods")
    if live > obs.replicas:
        return "Scaling", cond(
            "Progressing", "True", "ScalingDown", f"retiring {live - obs.replicas} workers"
        )
    if updated < live:
        return "Updating", cond(
            "Progressing", "True", "RollingUpdate", f"{updated}/{live} pods on the current spec"
        )
    return "Running", cond("Progressing", "False", "Converged", "the pool matches its spec")


def invalid_status(
    field: str, message: str, previous: Mapping[str, Any], *, generation: int, now: str
) -> dict[str, Any]:
    """A status patch for a rejected spec: existing pods are left alone."""
    old = list(previous.get("conditions") or [])
    degraded = condition(
        old,
        "Degraded",
        "True",
        "InvalidSpec",
        f"{field}: {message}",
        generation=generation,
        now=now,
    )
    progressing = condition(
        old,
        "Progressing",
        "False",
        "InvalidSpec",
        f"fix {field} to continue",
        generation=generation,
        now=now,
    )
    others = [c for c in old if c.get("type") not in ("Degraded", "Progressing")]
    return {
        "phase": "Invalid",
        "observedGeneration": generation,
        "conditions": [*others, progressing, degraded],
    }
