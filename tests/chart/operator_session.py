"""The real operator (kopf in-process) through a pool's life on the real API server, with the
chart's ServiceAccount credentials, and every API request it made as the server's audit log
recorded it: the evidence test_rbac.py checks the chart's RBAC with.

The chart is installed by Helm into the session's control plane (release ``mk`` in
``memkube-system``), the operator logs in with a token of the chart's ServiceAccount
(TokenRequest), so the real RBAC authorizer decides every request. The life: create a
WorkerPool of two workers, report the pods ready and one OOM-killed (the kubelet's part,
written by the test through the status subresource: no node runs pods), scale down to one
(the fake scheduler retires a worker first), delete the pool. Every namespace involved is
labelled PodSecurity ``restricted``, so every pod the operator and the chart's Deployment
create is admitted under it.

The scheduler is a small aiohttp fake on 127.0.0.1 that follows docs/internals.md's HTTP API
(pool snapshot, retire, events); the operator's settings hook points it there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from chartcases import CHART, NAMESPACE, RELEASE
from helmrender import run_child
from localkube import ControlPlane, Kube, KubeError

GROUP, VERSION, PLURAL = "memkube.dev", "v1alpha1", "workerpools"
POOL = "etl"
TIMEOUT = 60.0
ACCOUNT = f"{RELEASE}-memkube"
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
RESTRICTED = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}


def _workers(api: Kube, namespace: str) -> list[dict[str, Any]]:
    return [
        pod
        for pod in api.objects("", "v1", "pods", namespace, "app.kubernetes.io/component=worker")
        if not pod["metadata"].get("deletionTimestamp")
    ]


@contextlib.asynccontextmanager
async def fake_scheduler(api: Kube, namespace: str) -> AsyncIterator[str]:
    """The scheduler HTTP API over the pool's worker pods; yields its base URL."""

    async def pool(_: web.Request) -> web.Response:
        pods = await asyncio.to_thread(_workers, api, namespace)
        workers = [
            {
                "name": p["metadata"]["name"],
                "address": "tcp://127.0.0.1:8788",
                "status": "running",
                "memory": {"managed": 0, "unmanaged": 0, "spilled": 0},
            }
            for p in pods
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
        pods = await asyncio.to_thread(_workers, api, namespace)
        names = body.get("names") or [p["metadata"]["name"] for p in pods][: body.get("n", 0)]
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


def restricted_namespace(api: Kube, name: str) -> None:
    """Create ``name`` (or relabel it) with PodSecurity ``restricted`` enforced."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    try:
        api.create_object(body)
    except KubeError as exc:
        if exc.status != 409:
            raise
    api.patch_object("", "v1", "namespaces", None, name, {"metadata": {"labels": RESTRICTED}})


def install_chart(plane: ControlPlane, values: dict[str, Any]) -> str:
    """Install release ``mk`` (kept); its rendered manifest."""
    case = {"release": RELEASE, "namespace": NAMESPACE, "values": values, "keep": True}
    (result,) = run_child({"chart": str(CHART), "cases": [case]}, plane)
    assert "error" not in result, result["error"]
    manifest: str = result["manifest"]
    return manifest


def uninstall_chart(plane: ControlPlane) -> None:
    case = {"release": RELEASE, "namespace": NAMESPACE}
    run_child({"chart": str(CHART), "cases": [], "uninstall": [case]}, plane)


def service_account_token(api: Kube) -> str:
    """A bound token of the chart's ServiceAccount, as the kubelet would mount it."""
    result = api.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{ACCOUNT}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    token: str = result["status"]["token"]
    return token


def audit_events(log: Path, offset: int, user: str = USER) -> list[dict[str, Any]]:
    """One audit event per request of ``user`` logged after byte ``offset``: its last stage
    (a watch still open has only ResponseStarted; a finished request ResponseComplete)."""
    last: dict[str, dict[str, Any]] = {}
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            event = json.loads(line)
            if event["user"]["username"] == user:
                last[event["auditID"]] = event
    return list(last.values())


def as_record(event: dict[str, Any]) -> dict[str, Any]:
    """An audit event in the shape rbac.ApiRequest.from_record reads, plus the status code."""
    ref = event.get("objectRef") or {}
    return {
        "verb": event["verb"],
        "apiGroup": ref.get("apiGroup", ""),
        "resource": ref.get("resource", ""),
        "subresource": ref.get("subresource", ""),
        "namespace": ref.get("namespace"),
        "name": ref.get("name"),
        "path": event["requestURI"].split("?", 1)[0] if not ref else "",
        "code": (event.get("responseStatus") or {}).get("code", 0),
    }


class _Recent(logging.Handler):
    """The operator's (and kopf's) last log lines, for the message of a timeout."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=40)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}"[:300])


RECENT = _Recent()


async def _until(api: Kube, namespace: str, check: Any, what: str) -> None:
    try:
        await api.until_async(check, namespace, TIMEOUT)
    except TimeoutError as exc:
        log = "\n  ".join(RECENT.lines)
        raise AssertionError(
            f"operator did not {what} within {TIMEOUT}s; its last log lines:\n  {log}"
        ) from exc


async def record_operator_session(
    plane: ControlPlane,
    api: Kube,
    pool_body: dict[str, Any],
    watch: tuple[str, ...],
    values: dict[str, Any],
) -> dict[str, Any]:
    """Install the chart with ``values``, run the operator as its ServiceAccount over one pool's
    life (``watch=()``: every namespace), uninstall; the audit records and the manifest."""
    import kopf
    from memkube_operator.handlers import build_registry
    from memkube_operator.settings import OperatorConfig, Reconciling, SchedulerAccess

    namespace = pool_body["metadata"]["namespace"]
    for logger in ("kopf", "memkube_operator"):
        logging.getLogger(logger).addHandler(RECENT)
    RECENT.lines.clear()
    for name in {
        NAMESPACE,
        namespace,
        *watch,
        *((values.get("watch") or {}).get("namespaces") or []),
    }:
        restricted_namespace(api, name)
    manifest = install_chart(plane, values)
    try:
        token = service_account_token(api)
        # The chart's own operator pod: created by the Deployment's ReplicaSet, admitted
        # under `restricted` (it stays Pending: no node).
        await _until(
            api,
            NAMESPACE,
            lambda: bool(
                api.objects("", "v1", "pods", NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
            ),
            "see the chart's operator pod admitted",
        )
        offset = plane.audit_log.stat().st_size
        async with fake_scheduler(api, namespace) as scheduler_url:
            config = OperatorConfig(
                scheduler=SchedulerAccess(url=lambda *_: scheduler_url, request_timeout=5.0),
                reconciling=Reconciling(resync_seconds=2.0, retry_delay=0.5),
                namespaces=watch,
                # The pool Secret then holds a metrics token the pods reference.
                metrics_token="scrape-only",
            )

            def login() -> kopf.ConnectionInfo:
                return kopf.ConnectionInfo(
                    server=plane.server,
                    ca_path=str(plane.pki.ca.cert),
                    scheme="Bearer",
                    token=token,
                )

            stop, ready = threading.Event(), threading.Event()
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    asyncio.run(
                        kopf.operator(
                            registry=build_registry(config, login=login),
                            standalone=True,
                            clusterwide=not watch,
                            namespaces=watch,
                            stop_flag=stop,
                            ready_flag=ready,
                        )
                    )
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)
                    ready.set()

            thread = threading.Thread(target=run, name="kopf-chart-operator", daemon=True)
            thread.start()
            await asyncio.to_thread(ready.wait, 30)
            try:
                uid = api.create_object(pool_body)["metadata"]["uid"]
                await _until(
                    api, namespace, lambda: len(_workers(api, namespace)) == 2, "create two workers"
                )
                await asyncio.to_thread(api.mark_pods_ready, namespace)
                victim = _workers(api, namespace)[0]["metadata"]["name"]
                await asyncio.to_thread(api.set_oom_killed, namespace, victim)
                await _until(
                    api,
                    namespace,
                    lambda: any(
                        e.get("reason") == "OOMKilled" and e["involvedObject"].get("uid") == uid
                        for e in api.objects("", "v1", "events", namespace)
                    ),
                    "post an OOMKilled event",
                )
                api.patch_object(
                    GROUP,
                    VERSION,
                    PLURAL,
                    namespace,
                    POOL,
                    {"spec": {"replicas": 1}},
                    subresource="scale",
                )
                await _until(
                    api, namespace, lambda: len(_workers(api, namespace)) == 1, "retire one worker"
                )
                api.delete_object(GROUP, VERSION, PLURAL, namespace, POOL)
                await _until(
                    api,
                    namespace,
                    lambda: api.get_object(GROUP, VERSION, PLURAL, namespace, POOL) is None,
                    "release the pool",
                )
            finally:
                stop.set()
                await asyncio.to_thread(thread.join, TIMEOUT)
            if errors:
                raise errors[0]
        records = [as_record(e) for e in audit_events(plane.audit_log, offset)]
    finally:
        uninstall_chart(plane)
    return {"records": records, "manifest": manifest}
