"""Run the real operator (kopf in-process) through a pool's life against the API double, and
return every API request it made: the evidence test_rbac.py checks the chart's RBAC against.

The life: create a WorkerPool of two workers, the kubelet stand-in marks pods ready, a worker
is OOM-killed, the pool is scaled down to one (the scheduler retires a worker first), and the
pool is deleted. The test itself changes the double only through its direct methods, which
the request log does not record, so every logged request is the operator's.

The scheduler is a small aiohttp fake on 127.0.0.1 that follows docs/internals.md's HTTP API
(pool snapshot, retire, events); the operator's settings hook points it there.

Not covered: the operator's own correctness (tests/operator/ covers it); this only records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "operator" / "memkube_operator" / "crds" / "workerpools.memkube.dev.yaml"
GROUP, VERSION, PLURAL = "memkube.dev", "v1alpha1", "workerpools"
POOL = "etl"
TIMEOUT = 30.0


def _workers(api: Any, namespace: str) -> list[dict[str, Any]]:
    return [
        pod
        for pod in api.objects("", "v1", "pods", namespace)
        if pod["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "worker"
        and not pod["metadata"].get("deletionTimestamp")
    ]


@contextlib.asynccontextmanager
async def fake_scheduler(api: Any, namespace: str) -> AsyncIterator[str]:
    """The scheduler HTTP API over the double's worker pods; yields its base URL."""

    async def pool(_: web.Request) -> web.Response:
        workers = [
            {
                "name": p["metadata"]["name"],
                "address": "tcp://127.0.0.1:8788",
                "status": "running",
                "memory": {"managed": 0, "unmanaged": 0, "spilled": 0},
            }
            for p in _workers(api, namespace)
        ]
        return web.json_response(
            {
                "scheduler": {"address": "tcp://127.0.0.1:8786"},
                "workers": workers,
                "memory": {"limit": 0, "managed": 0, "unmanaged": 0, "spilled": 0},
                "tasks": {},
                "replication": {"factor": 1, "shortfall": 0},
                "events": [],
            }
        )

    async def retire(request: web.Request) -> web.Response:
        body = await request.json()
        names = (
            body.get("names")
            or [p["metadata"]["name"] for p in _workers(api, namespace)][: body.get("n", 0)]
        )
        return web.json_response(
            {"retired": [{"name": n, "address": "tcp://127.0.0.1:8788"} for n in names]}
        )

    async def events(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/v1/pool", pool),
            web.post("/api/v1/retire", retire),
            web.post("/api/v1/events", events),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _until(api: Any, condition: Callable[[], bool], what: str) -> None:
    try:
        await api.wait_for(
            GROUP, VERSION, PLURAL, "default", "-", lambda _: condition(), timeout=TIMEOUT
        )
    except TimeoutError as exc:
        raise AssertionError(f"operator did not {what} within {TIMEOUT}s") from exc


async def record_operator_session(
    pool_body: dict[str, Any], watch: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The operator's API requests over one pool's life; ``watch=()`` watches all namespaces."""
    import kopf
    from apidouble import ApiDouble
    from memkube_operator.handlers import build_registry
    from memkube_operator.settings import OperatorConfig, Reconciling, SchedulerAccess

    namespace = pool_body["metadata"]["namespace"]
    async with ApiDouble() as api, fake_scheduler(api, namespace) as scheduler_url:
        api.apply_manifests(CRD.read_text())
        api.create_object(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        config = OperatorConfig(
            scheduler=SchedulerAccess(url=lambda *_: scheduler_url, request_timeout=5.0),
            reconciling=Reconciling(resync_seconds=2.0, retry_delay=0.5),
            namespaces=watch,
        )

        def login() -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=api.url, scheme="Bearer", token="apidouble-token")

        stop = asyncio.Event()
        operator = asyncio.create_task(
            kopf.operator(
                registry=build_registry(config, login=login),
                standalone=True,
                clusterwide=not watch,
                namespaces=watch,
                stop_flag=stop,
            )
        )
        try:
            api.create_object(pool_body)
            await _until(api, lambda: len(_workers(api, namespace)) == 2, "create two workers")
            api.mark_pods_ready(namespace)
            victim = _workers(api, namespace)[0]["metadata"]["name"]
            api.set_oom_killed(namespace, victim)
            await _until(
                api,
                lambda: any(
                    e.get("reason") == "OOMKilled"
                    for e in api.objects("", "v1", "events", namespace)
                ),
                "post an OOMKilled event",
            )
            api.patch_object(
                GROUP, VERSION, PLURAL, namespace, POOL, {"spec": {"replicas": 1}}, subresource=""
            )
            await _until(api, lambda: len(_workers(api, namespace)) == 1, "retire one worker")
            api.delete_object(GROUP, VERSION, PLURAL, namespace, POOL)
            await _until(
                api,
                lambda: api.get_object(GROUP, VERSION, PLURAL, namespace, POOL) is None,
                "release the pool",
            )
        finally:
            stop.set()
            await asyncio.wait_for(operator, timeout=TIMEOUT)
        return [dict(record) for record in api.requests]
