"""The operator running for real against the API double, plus a fake scheduler.

:func:`running_operator` starts kopf in-process (``kopf.operator(standalone=True)``) with
the operator's own registry and a login that points at an :class:`apidouble.ApiDouble`;
the scheduler hook points every pool at :class:`FakeScheduler`, a small aiohttp server that
follows the scheduler HTTP contract of docs/internals.md (token, ``/api/v1/pool``,
``/api/v1/retire``, ``/api/v1/events``) over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web
from apidouble import ApiDouble
from memkube_operator.crd import CRD_PATH
from memkube_operator.handlers import build_registry
from memkube_operator.reconcile import Reconciler
from memkube_operator.settings import OperatorConfig, Reconciling, SchedulerAccess

GROUP, VERSION, PLURAL = "memkube.dev", "v1alpha1", "workerpools"
NS = "default"


def worker_pods(api: ApiDouble, pool: str, namespace: str = NS) -> list[dict[str, Any]]:
    """The pool's worker pods as the double stores them."""
    return [
        p
        for p in api.objects("", "v1", "pods", namespace)
        if p["metadata"].get("labels", {}).get("memkube.dev/pool") == pool
        and p["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    ]


def pool_status(api: ApiDouble, pool: str, namespace: str = NS) -> dict[str, Any]:
    body = api.get_object(GROUP, VERSION, PLURAL, namespace, pool) or {}
    return body.get("status") or {}


def condition(api: ApiDouble, pool: str, kind: str) -> dict[str, Any]:
    return next((c for c in pool_status(api, pool).get("conditions", []) if c["type"] == kind), {})


async def until(api: ApiDouble, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds, woken by every change in the double (no polling)."""
    await api.wait_for("", "v1", "namespaces", None, NS, lambda _: check(), timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class FakeScheduler:
    """A scheduler HTTP API on 127.0.0.1 whose workers are the pool's ready pods."""

    api: ApiDouble
    pool: str
    token: Callable[[], str | None]
    refuse: bool = False
    retire_calls: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    def workers(self) -> list[str]:
        return sorted(
            p["metadata"]["name"]
            for p in worker_pods(self.api, self.pool)
            if not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("podIP")
        )

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token()}"

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _pool(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        workers = [
            {"name": n, "status": "running", "memory": {"state": "normal", "managed": 100}}
            for n in self.workers()
        ]
        memory = {"limit": 0, "managed": 100 * len(workers), "unmanaged": 7, "spilled": 3}
        return web.json_response({"workers": workers, "memory": memory, "events": []})

    async def _retire(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        self.retire_calls.append(body)
        if self.refuse:
            return web.json_response({"error": "the others cannot take the data"}, status=409)
        known = self.workers()
        if "names" in body:
            if not set(body["names"]) <= set(known):
                return web.json_response({"error": "unknown worker"}, status=400)
            chosen = list(body["names"])
        elif isinstance(body.get("n"), int) and body["n"] > 0:
            chosen = known[: body["n"]]  # "least unique data": the first by name here
        else:
            return web.json_response({"error": "names or n"}, status=400)
        return web.json_response(
            {"retired": [{"name": n, "address": f"tcp://{n}"} for n in chosen]}
        )

    async def _events(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        self.reports.append(await request.json())
        return web.json_response({})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/api/v1/pool", self._pool)
        app.router.add_post("/api/v1/retire", self._retire)
        app.router.add_post("/api/v1/events", self._events)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def pool_token(api: ApiDouble, pool: str) -> str | None:
    import base64

    secret = api.get_object("", "v1", "secrets", NS, f"{pool}-token")
    if secret is None:
        return None
    return base64.b64decode(secret["data"]["token"]).decode()


def operator_config(
    scheduler_url: Callable[[str, str, int], str], **reconciling: Any
) -> OperatorConfig:
    timing = {"resync_seconds": 2.0, "retry_delay": 0.3, **reconciling}
    return OperatorConfig(
        scheduler=SchedulerAccess(url=scheduler_url, request_timeout=2.0, retire_timeout=10.0),
        reconciling=Reconciling(**timing),
    )


@contextlib.asynccontextmanager
async def running_operator(api: ApiDouble, config: OperatorConfig) -> AsyncIterator[Reconciler]:
    """kopf with the operator's registry until the block ends.

    kopf runs on its own event loop in a thread: when it stops it cancels every task created
    in its loop since it started, which in the test's loop would include the test itself.
    """
    reconcilers: list[Reconciler] = []

    def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url, scheme="Bearer", token="apidouble-token")

    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=build_registry(config, login=login, reconcilers=reconcilers),
                    standalone=True,
                    clusterwide=True,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 10)
    if errors:
        raise errors[0]
    try:
        yield reconcilers[0]
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 20)
        assert not thread.is_alive(), "kopf did not stop"
        if errors:
            raise errors[0]


def apply_crd(api: ApiDouble) -> None:
    api.apply_manifests(CRD_PATH)
