"""The operator running for real against the real API server, plus a fake scheduler.

:class:`ClusterApi` is the test's own access to the session's control plane
(tests/support/localkube), scoped to the test's namespace (PodSecurity ``restricted``).
:func:`running_operator` starts kopf in-process (``kopf.operator(standalone=True)``) with
the operator's own registry, watching that namespace, logged in with the credentials the
test chooses (admin by default); the scheduler hook points every pool at
:class:`FakeScheduler`, a small aiohttp server that follows the scheduler HTTP contract of
docs/internals.md (token, ``/api/v1/pool``, ``/api/v1/retire``, ``/api/v1/events``) over
loopback. No node runs pods: :meth:`ClusterApi.mark_pods_ready` writes their status
through the status subresource, as a kubelet would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Self

import kopf
from aiohttp import web
from localkube import ControlPlane, Kube
from memkube_operator.handlers import build_registry
from memkube_operator.reconcile import Reconciler
from memkube_operator.settings import OperatorConfig, Reconciling, SchedulerAccess

GROUP, VERSION, PLURAL = "memkube.dev", "v1alpha1", "workerpools"


class ClusterApi:
    """Admin access to the real API server for one test, in its own namespace ``ns``.

    Every method of :class:`localkube.Kube` is available; :meth:`create_object` puts
    namespaced objects without a namespace into ``ns``."""

    def __init__(self, kube: Kube, plane: ControlPlane, ns: str) -> None:
        self.kube = kube
        self.plane = plane
        self.ns = ns
        self.url = plane.server
        self.kubeconfig_path = plane.kubeconfig

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)

    def create_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole"):
            obj = {**obj, "metadata": {"namespace": self.ns, **obj.get("metadata", {})}}
        return self.kube.create_object(obj)

    def login(self) -> kopf.ConnectionInfo:
        """kopf's (and the operator's) credentials: the cluster's admin client certificate."""
        pki = self.plane.pki
        return kopf.ConnectionInfo(
            server=self.url,
            ca_path=str(pki.ca.cert),
            certificate_path=str(pki.admin.cert),
            private_key_path=str(pki.admin.key),
            default_namespace=self.ns,
        )

    def scale(self, pool: str, replicas: int) -> dict[str, Any]:
        """What ``kubectl scale`` does: a merge patch of the scale subresource."""
        return self.kube.patch_object(
            GROUP,
            VERSION,
            PLURAL,
            self.ns,
            pool,
            {"spec": {"replicas": replicas}},
            subresource="scale",
        )


def worker_pods(api: ClusterApi, pool: str) -> list[dict[str, Any]]:
    """The pool's worker pods as the API server has them."""
    return api.objects(
        "", "v1", "pods", api.ns, f"memkube.dev/pool={pool},app.kubernetes.io/component=worker"
    )


def pool_status(api: ClusterApi, pool: str) -> dict[str, Any]:
    body = api.get_object(GROUP, VERSION, PLURAL, api.ns, pool) or {}
    return body.get("status") or {}


def condition(api: ClusterApi, pool: str, kind: str) -> dict[str, Any]:
    return next((c for c in pool_status(api, pool).get("conditions", []) if c["type"] == kind), {})


async def until(api: ClusterApi, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``check()`` holds, re-checked on every watch event of the namespace's
    pods and WorkerPools (see :meth:`localkube.Kube.until`)."""
    await api.until_async(check, api.ns, timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class FakeScheduler:
    """A scheduler HTTP API on 127.0.0.1 whose workers are the pool's ready pods."""

    api: ClusterApi
    pool: str
    token: Callable[[], str | None]
    refuse: bool = False
    stall: float = 0.0
    """Seconds every pool snapshot is held back (a scheduler too busy to answer)."""
    stalled: int = 0
    """Snapshot requests that arrived while stalling."""
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
        if self.stall:
            self.stalled += 1
            await asyncio.sleep(self.stall)
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


def pool_token(api: ClusterApi, pool: str) -> str | None:
    import base64

    secret = api.get_object("", "v1", "secrets", api.ns, f"{pool}-token")
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
async def running_operator(
    api: ClusterApi,
    config: OperatorConfig,
    login: Callable[[], kopf.ConnectionInfo] | None = None,
) -> AsyncIterator[Reconciler]:
    """kopf with the operator's registry, watching the test's namespace, until the block ends.

    kopf runs on its own event loop in a thread: when it stops it cancels every task created
    in its loop since it started, which in the test's loop would include the test itself.
    ``login`` defaults to the admin's credentials.
    """
    reconcilers: list[Reconciler] = []
    login = login or api.login

    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=build_registry(config, login=login, reconcilers=reconcilers),
                    standalone=True,
                    namespaces=[api.ns],
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 30)
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


class LoopTicks:
    """Counts 50 ms ticks of the running event loop while entered: a loop that ticked on
    was not blocked by what ran meanwhile."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.ticks += 1

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
