"""The scale-down protocol: retire through the scheduler, then delete exactly those pods.

1. ``POST /api/v1/retire`` with the outdated pods' names (rolling) or a count (the scheduler
   picks the workers holding the least unique data);
2. on success, delete exactly the pods it names, with a ``Retired`` Event each;
3. when the scheduler is not ready, unreachable or refuses (409), delete nothing and return
   the reason, which status turns into ``Progressing=True, reason=ScaleDownWaiting``;
4. only when a force timeout is configured and the wait (``status.scaleDown.waitingSince``)
   has lasted that long, delete the surplus without retirement, newest first, with a
   ``ForcedScaleDown`` Warning Event.

Not covered: choosing what to shrink (:mod:`plan`).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from memkube.errors import CommError, RetireError

from .kube import PODS, KubeApi
from .observe import pod_view
from .plan import Plan
from .scheduler_api import SchedulerClient
from .spec import PoolSpec

log = logging.getLogger(__name__)


async def retire_surplus(
    api: KubeApi,
    client: SchedulerClient,
    body: Mapping[str, Any],
    pool: PoolSpec,
    step: Plan,
    pods: list[dict[str, Any]],
    *,
    scheduler_ready: bool,
    force_default: float | None,
) -> str | None:
    """Carry out the plan's retirement; the reason scale-down waits, if it does."""
    uids = {p["metadata"]["name"]: p["metadata"].get("uid") for p in pods}
    try:
        if not scheduler_ready:
            raise CommError("the scheduler pod is not ready")
        retired = await client.retire(names=step.retire_names, n=step.retire_count)
    except (CommError, RetireError) as exc:
        force_after = pool.force_after_seconds
        waiting = ((body.get("status") or {}).get("scaleDown") or {}).get("waitingSince")
        now = datetime.datetime.now(datetime.UTC)
        if force_due(waiting, force_default if force_after is None else force_after, now):
            await _force_delete(api, body, pool, step, pods)
            return None
        return f"{type(exc).__name__}: {exc}"
    for name in retired:
        if name not in uids:
            log.warning("scheduler retired %s, which is not a pod of %s", name, pool.name)
            continue
        await api.delete(PODS, pool.namespace, name, uid=uids[name])
        await api.post_event(body, reason="Retired", message=f"retired worker {name}")
    return None


def force_due(waiting_since: str | None, force_after: float | None, now: datetime.datetime) -> bool:
    """Whether a scale-down waiting since ``waiting_since`` may now delete without retiring."""
    if force_after is None or waiting_since is None:
        return False
    since = datetime.datetime.fromisoformat(waiting_since)
    return (now - since).total_seconds() >= force_after


async def _force_delete(
    api: KubeApi, body: Mapping[str, Any], pool: PoolSpec, step: Plan, pods: list[dict[str, Any]]
) -> None:
    views = [pod_view(p) for p in pods]
    candidates = sorted(
        (v for v in views if not v.deleting and not v.finished and v.name not in step.delete_now),
        key=lambda v: v.created,
        reverse=True,
    )
    chosen = list(step.retire_names)
    chosen += [v.name for v in candidates if v.name not in chosen][: step.retire_count]
    for name in chosen:
        await api.delete(PODS, pool.namespace, name)
    await api.post_event(
        body,
        reason="ForcedScaleDown",
        message=f"scheduler unreachable past the force timeout; deleted {', '.join(chosen)}",
        warning=True,
    )
