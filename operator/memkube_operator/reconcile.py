"""One reconcile pass for one WorkerPool: read, plan, act, write status.

The pass always starts from what the API server says now (a fresh GET of the pool and a
label-selected list of its pods), so a restarted operator or a pod deleted by hand simply
shows up as a difference. Children are created only when absent; worker pods are deleted
only when finished, never started, retired by the scheduler, or (opt-in) after the force
timeout. Passes for the same pool are serialized by a lock; pod events coalesce into at
most one pending pass per pool.

Errors: an invalid spec raises :class:`kopf.PermanentError` after writing a condition and
an Event; API conflicts/throttling and an unreachable scheduler during scale-down raise
:class:`kopf.TemporaryError` with the configured backoff.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import kopf
from memkube.errors import MemkubeError

from . import naming
from .builders import (
    build_scheduler_pod,
    build_scheduler_service,
    build_token_secret,
    build_worker_pod,
)
from .builders.worker import worker_resources
from .kube import PODS, SECRETS, SERVICES, WORKERPOOLS, ApiError, Kind, KubeApi
from .observe import PodView, pod_view
from .plan import Plan, plan
from .scaledown import retire_surplus
from .scheduler_api import EventReport, SchedulerClient
from .settings import SCHEDULER_PORT, OperatorConfig
from .spec import PoolSpec, SpecError, parse_pool
from .status import Observation, condition, derive_status, invalid_status

log = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Converges WorkerPools; shared by every kopf handler of one operator."""

    def __init__(self, api: KubeApi, config: OperatorConfig) -> None:
        self.api = api
        self.config = config
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._pending: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # every poked pass, waiting or running

    def poke(self, namespace: str, name: str) -> None:
        """Schedule a pass soon (for pod events); coalesces with one already waiting."""
        key = (namespace, name)
        if key in self._pending:
            return
        task = asyncio.create_task(self._poked(namespace, name))
        task.add_done_callback(_log_crash)
        task.add_done_callback(self._tasks.discard)
        self._tasks.add(task)
        self._pending[key] = task

    async def _poked(self, namespace: str, name: str) -> None:
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            # From here on, a new event needs a new pass: this one may have read too early.
            self._pending.pop((namespace, name), None)
            try:
                await self._pass(namespace, name)
            except (kopf.TemporaryError, kopf.PermanentError, ApiError, MemkubeError) as exc:
                log.info("pass for %s/%s after a pod event: %s", namespace, name, exc)

    async def reconcile(self, namespace: str, name: str) -> None:
        """One serialized pass (for kopf handlers: errors propagate for kopf's retries)."""
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            await self._pass(namespace, name)

    async def close(self) -> None:
        """Cancel passes started by pod events (waiting or running), then close the client."""
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.api.close()

    def forget(self, namespace: str, name: str) -> None:
        """Drop per-pool state once the WorkerPool is gone."""
        self._locks.pop((namespace, name), None)

    async def _pass(self, namespace: str, name: str) -> None:
        body = await self.api.get(WORKERPOOLS, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # deleted: garbage collection removes the children
        try:
            await self._converge(body)
        except SpecError as exc:
            await self._reject(body, exc)
            raise kopf.PermanentError(str(exc)) from exc
        except ApiError as exc:
            if exc.retryable:
                # Back off at least as long as the API server asked (Retry-After).
                delay = max(self.config.reconciling.retry_delay, exc.retry_after or 0.0)
                raise kopf.TemporaryError(str(exc), delay=delay) from exc
            # Refused for good (admission, quota, RBAC): say so where users look; the resync
            # timer tries again, so a raised quota or fixed policy heals the pool.
            await self._refused(body, exc)
            raise kopf.PermanentError(str(exc)) from exc

    async def _reject(self, body: Mapping[str, Any], error: SpecError) -> None:
        meta, status = body["metadata"], body.get("status") or {}
        generation = int(meta.get("generation", 0) or 0)
        already = (
            status.get("observedGeneration") == generation and status.get("phase") == "Invalid"
        )
        patch = invalid_status(
            error.field, error.message, status, generation=generation, now=_stamp(_now())
        )
        await self.api.merge_patch(
            WORKERPOOLS, meta["namespace"], meta["name"], {"status": patch}, status=True
        )
        if not already:
            await self.api.post_event(body, reason="InvalidSpec", message=str(error), warning=True)

    async def _refused(self, body: Mapping[str, Any], error: ApiError) -> None:
        meta, status = body["metadata"], body.get("status") or {}
        message = f"the API server refused: {error}"
        old = list(status.get("conditions") or [])
        if any(c.get("type") == "Degraded" and c.get("message") == message for c in old):
            return  # already said
        degraded = condition(
            old,
            "Degraded",
            "True",
            "ApiRefused",
            message,
            generation=int(meta.get("generation", 0) or 0),
            now=_stamp(_now()),
        )
        conditions = [c for c in old if c.get("type") != "Degraded"] + [degraded]
        await self.api.merge_patch(
            WORKERPOOLS,
            meta["namespace"],
            meta["name"],
            {"status": {"phase": "Degraded", "conditions": conditions}},
            status=True,
        )
        await self.api.post_event(body, reason="ApiRefused", message=message, warning=True)

    async def _converge(self, body: Mapping[str, Any]) -> None:
        pool = parse_pool(body)
        # Build everything before creating anything: a spec that cannot be built must not
        # leave a half-built pool behind.
        desired_worker = build_worker_pod(pool, self.config.pods)
        scheduler_pod = build_scheduler_pod(pool, self.config.pods)
        token = await self._ensure_token(pool)
        scheduler_ready = await self._ensure_scheduler(pool, scheduler_pod)
        await self._ensure_created(
            SERVICES,
            pool.namespace,
            naming.scheduler_name(pool.name),
            build_scheduler_service(pool),
        )
        pods = await self._worker_pods(pool)
        desired_hash = desired_worker["metadata"].get("annotations", {})[
            naming.SPEC_HASH_ANNOTATION
        ]
        step = plan(
            pool.replicas,
            desired_hash,
            [pod_view(p) for p in pods],
            max_creates=self.config.reconciling.max_creates_per_pass,
        )
        client = SchedulerClient(
            self.config.scheduler.url(
                pool.namespace, naming.scheduler_name(pool.name), SCHEDULER_PORT
            ),
            token,
            self.config.scheduler,
        )
        scheduler_error = await self._act(body, pool, step, pods, client, scheduler_ready)
        acted = bool(step.create_workers or step.delete_now or step.retires)
        # After acting the pods changed: list again; otherwise what we read is still current.
        views = None if acted else [pod_view(p) for p in pods]
        await self._write_status(
            body, pool, step, desired_hash, client, scheduler_ready, scheduler_error, views
        )
        if scheduler_error and step.retires:
            raise kopf.TemporaryError(
                f"scale-down waits: {scheduler_error}", delay=self.config.reconciling.retry_delay
            )

    async def _ensure_created(
        self, kind: Kind, namespace: str, name: str, manifest: Mapping[str, Any]
    ) -> dict[str, Any]:
        existing = await self.api.get(kind, namespace, name)
        if existing is not None:
            return existing
        try:
            return await self.api.create(kind, namespace, manifest)
        except ApiError as exc:
            if exc.status != 409:
                raise
            # Created between our GET and POST (another pass or a restarted operator).
            found = await self.api.get(kind, namespace, name)
            if found is None:
                raise
            return found

    async def _ensure_token(self, pool: PoolSpec) -> str:
        secret = await self._ensure_created(
            SECRETS,
            pool.namespace,
            naming.secret_name(pool.name),
            build_token_secret(pool, secrets.token_urlsafe(32), self.config.metrics_token),
        )
        encoded = (secret.get("data") or {}).get("token")
        if encoded is None:
            name = naming.secret_name(pool.name)
            raise SpecError(
                f"Secret/{name}", "exists without the key 'token'; delete it to get a new one"
            )
        return base64.b64decode(encoded).decode()

    async def _ensure_scheduler(self, pool: PoolSpec, manifest: Mapping[str, Any]) -> bool:
        name = naming.scheduler_name(pool.name)
        pod = await self._ensure_created(PODS, pool.namespace, name, manifest)
        view = pod_view(pod)
        if view.finished and not view.deleting:
            # An evicted scheduler never comes back by itself; the next pass recreates it.
            await self.api.delete(PODS, pool.namespace, name, uid=pod["metadata"].get("uid"))
            return False
        return view.ready and not view.deleting

    async def _worker_pods(self, pool: PoolSpec) -> list[dict[str, Any]]:
        pods = await self.api.list(PODS, pool.namespace, naming.selector(pool.name, naming.WORKER))
        # Only pods this WorkerPool controls (a same-named earlier pool's pods are not ours).
        return [
            p
            for p in pods
            if any(ref.get("uid") == pool.uid for ref in p["metadata"].get("ownerReferences", []))
        ]

    async def _act(
        self,
        body: Mapping[str, Any],
        pool: PoolSpec,
        step: Plan,
        pods: list[dict[str, Any]],
        client: SchedulerClient,
        scheduler_ready: bool,
    ) -> str | None:
        """Carry out the plan; the reason scale-down waits, if it does."""
        uids = {p["metadata"]["name"]: p["metadata"].get("uid") for p in pods}
        for name in step.delete_now:
            await self.api.delete(PODS, pool.namespace, name, uid=uids.get(name))
        for _ in range(step.create_workers):
            await self.api.create(PODS, pool.namespace, build_worker_pod(pool, self.config.pods))
        if not step.retires:
            return None
        return await retire_surplus(
            self.api,
            client,
            body,
            pool,
            step,
            pods,
            scheduler_ready=scheduler_ready,
            force_default=self.config.reconciling.force_scale_down_after,
        )

    async def _write_status(
        self,
        body: Mapping[str, Any],
        pool: PoolSpec,
        step: Plan,
        desired_hash: str,
        client: SchedulerClient,
        scheduler_ready: bool,
        scheduler_error: str | None,
        views: list[PodView] | None,
    ) -> None:
        previous = body.get("status") or {}
        pods = views if views is not None else [pod_view(p) for p in await self._worker_pods(pool)]
        snapshot: dict[str, Any] | None = None
        if scheduler_ready:
            try:
                snapshot = await client.pool()
            except MemkubeError as exc:
                log.info("no pool snapshot for %s: %s", pool.name, exc)
        oom_total, recorded, new_ooms = _count_ooms(pods, previous)
        for name in new_ooms:
            await self._report_oom(body, client, name, scheduler_ready)
        obs = Observation(
            pool=pool.name,
            namespace=pool.namespace,
            generation=pool.generation,
            replicas=pool.replicas,
            desired_hash=desired_hash,
            workers=pods,
            scheduler_ready=scheduler_ready,
            snapshot=snapshot,
            scheduler_error=scheduler_error,
            plan=step,
            oom_kills=oom_total,
            new_ooms=new_ooms,
        )
        now = _now()
        status: dict[str, Any] = dict(
            derive_status(
                obs, worker_resources(pool, self.config.pods).derived(), previous, now=_stamp(now)
            )
        )
        old_recorded = previous.get("oomRecorded") or {}
        status["oomRecorded"] = {**{k: None for k in old_recorded}, **recorded}
        if scheduler_error and step.retires:
            since = (previous.get("scaleDown") or {}).get("waitingSince") or _stamp(now)
            status["scaleDown"] = {"waitingSince": since, "message": scheduler_error}
        else:
            status["scaleDown"] = None
        if _already(previous, status):
            return  # nothing new: spare the API server a write
        await self.api.merge_patch(
            WORKERPOOLS, pool.namespace, pool.name, {"status": status}, status=True
        )

    async def _report_oom(
        self, body: Mapping[str, Any], client: SchedulerClient, pod: str, reachable: bool
    ) -> None:
        message = f"worker pod {pod} was OOM-killed by the kernel"
        await self.api.post_event(body, reason="OOMKilled", message=message, warning=True)
        if not reachable:
            return
        try:
            await client.report(EventReport(kind="oom-kill", worker=pod, message=message))
        except MemkubeError as exc:
            log.info("could not report the OOM kill of %s to the scheduler: %s", pod, exc)


def _log_crash(task: asyncio.Task[None]) -> None:
    """Surface a bug in a pass started by a pod event (its errors are handled inside)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("pass crashed", exc_info=task.exception())


def _already(previous: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Whether applying ``patch`` as a merge patch would leave ``previous`` unchanged."""
    for key, value in patch.items():
        if value is None:
            if key in previous:
                return False
        elif isinstance(value, Mapping) and isinstance(previous.get(key), Mapping):
            if not _already(previous[key], value):
                return False
        elif previous.get(key) != value:
            return False
    return True


def _count_ooms(
    pods: list[PodView], previous: Mapping[str, Any]
) -> tuple[int, dict[str, int], list[str]]:
    """OOM kills not yet counted: a pod whose last termination was an OOM kill and whose
    restart count moved past the one recorded for it."""
    recorded: Mapping[str, int] = previous.get("oomRecorded") or {}
    total = int(previous.get("oomKills", 0) or 0)
    now: dict[str, int] = {}
    new: list[str] = []
    for pod in pods:
        seen = int(recorded.get(pod.name, 0))
        if pod.last_oom and pod.restart_count > seen:
            new.append(pod.name)
            total += 1
        now[pod.name] = max(seen, pod.restart_count) if pod.last_oom else seen
    return total, {k: v for k, v in now.items() if v}, new
