"""API errors and lost answers: the operator retries with backoff and converges exactly.

kopf's watches and the operator's own calls go through :class:`opproxy.FaultProxy`, which
fails chosen requests the way a busy or flaky API server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator

import kopf
from aiohttp import web
from memkube_operator.handlers import build_registry
from opharness import (
    GROUP,
    VERSION,
    ClusterApi,
    LoopTicks,
    condition,
    operator_config,
    until,
    worker_pods,
)
from opproxy import FaultProxy, Rule


def admin_ssl(api: ClusterApi) -> ssl.SSLContext:
    pki = api.plane.pki
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
    return context


def proxy_to(api: ClusterApi, rule: Rule, **options: object) -> FaultProxy:
    return FaultProxy(api.url, rule, ssl=admin_ssl(api), **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def operator_via(proxy: FaultProxy, namespace: str) -> AsyncIterator[None]:
    def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=proxy.url, scheme="Bearer", token="t")

    stop, ready = threading.Event(), threading.Event()
    config = operator_config(lambda *_: "http://127.0.0.1:9")
    thread = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(
                registry=build_registry(config, login=login),
                standalone=True,
                namespaces=[namespace],
                stop_flag=stop,
                ready_flag=ready,
            )
        ),
        daemon=True,
    )
    thread.start()
    await asyncio.to_thread(ready.wait, 30)
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 20)


def first(n: int, status: int, *, after: bool, method: str, suffix: str) -> Rule:
    """Fail the first ``n`` requests with this method whose path ends with ``suffix``."""
    left = [n]

    def rule(request: web.Request) -> tuple[int, bool] | None:
        if request.method == method and request.path.endswith(suffix) and left[0] > 0:
            left[0] -= 1
            return status, after
        return None

    return rule


def live(api: ClusterApi) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in worker_pods(api, "demo")
        if not p["metadata"].get("deletionTimestamp")
    ]


async def run_pool(api: ClusterApi, rule: Rule) -> FaultProxy:
    proxy = proxy_to(api, rule)
    await proxy.start()
    try:
        async with operator_via(proxy, api.ns):
            api.create_object(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "WorkerPool",
                    "metadata": {"name": "demo"},
                    "spec": {"replicas": 3},
                }
            )
            await until(api, lambda: len(live(api)) == 3, timeout=20)
            api.mark_pods_ready(api.ns)
            await until(
                api, lambda: condition(api, "demo", "Ready").get("status") == "True", timeout=20
            )
            assert len(live(api)) == 3
    finally:
        await proxy.stop()
    return proxy


async def test_server_errors_and_throttling_are_retried(api: ClusterApi) -> None:
    errors = [
        first(2, 500, after=False, method="POST", suffix="/pods"),
        first(2, 429, after=False, method="PATCH", suffix="/status"),
    ]

    def rule(request: web.Request) -> tuple[int, bool] | None:
        return errors[0](request) or errors[1](request)

    proxy = await run_pool(api, rule)
    assert [s for _, _, s in proxy.injected].count(500) == 2
    assert [s for _, _, s in proxy.injected].count(429) == 2


async def test_a_lost_create_answer_leaves_no_duplicate_behind(api: ClusterApi) -> None:
    # The first pod POST reaches the double but its answer is lost. The operator retries the
    # pass, and since it counts the pods that exist, the lost one counts: exactly 3.
    proxy = await run_pool(api, first(1, 504, after=True, method="POST", suffix="/pods"))
    assert proxy.injected == [("POST", f"/api/v1/namespaces/{api.ns}/pods", 504)]


async def test_a_conflict_on_create_is_resolved_by_reading_back(api: ClusterApi) -> None:
    await run_pool(api, first(1, 409, after=True, method="POST", suffix="/secrets"))
    assert api.get_object("", "v1", "secrets", api.ns, "demo-token") is not None


async def test_a_refused_create_is_a_condition_and_heals_on_resync(api: ClusterApi) -> None:
    refusing = [True]

    def rule(request: web.Request) -> tuple[int, bool] | None:
        if refusing[0] and request.method == "POST" and request.path.endswith("/pods"):
            return 403, False  # as for an exceeded ResourceQuota
        return None

    proxy = proxy_to(api, rule)
    await proxy.start()
    try:
        async with operator_via(proxy, api.ns):
            api.create_object(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "WorkerPool",
                    "metadata": {"name": "demo"},
                    "spec": {"replicas": 2},
                }
            )
            await until(
                api, lambda: condition(api, "demo", "Degraded").get("reason") == "ApiRefused"
            )
            assert "403" in condition(api, "demo", "Degraded")["message"]
            await until(api, lambda: len(refused_events(api)) == 1)
            refusing[0] = False  # quota raised: the resync timer finishes the pool
            await until(api, lambda: len(live(api)) == 2, timeout=20)
    finally:
        await proxy.stop()


def refused_events(api: ClusterApi) -> list[dict[str, object]]:
    return [e for e in api.objects("", "v1", "events", api.ns) if e["reason"] == "ApiRefused"]


async def test_the_api_client_logs_in_again_after_a_401(api: ClusterApi) -> None:
    from memkube_operator.kube import PODS, KubeApi

    logins: list[int] = []

    def login() -> kopf.ConnectionInfo:
        logins.append(1)
        return kopf.ConnectionInfo(server=proxy.url, scheme="Bearer", token=f"t{len(logins)}")

    proxy = proxy_to(api, first(1, 401, after=False, method="GET", suffix="/pods/absent"))
    await proxy.start()
    client = KubeApi(login)
    try:
        assert await client.get(PODS, api.ns, "absent") is None
        assert len(logins) == 2
        assert await client.get(PODS, api.ns, "demo-scheduler") is None
        assert len(logins) == 2
    finally:
        await client.close()
        await proxy.stop()


async def test_throttling_waits_as_long_as_retry_after_says(api: ClusterApi) -> None:
    from memkube_operator.kube import PODS, ApiError, KubeApi

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=proxy.url)

    proxy = proxy_to(api, first(2, 429, after=False, method="GET", suffix="/pods"), retry_after=7)
    await proxy.start()
    client = KubeApi(login, sleep=sleep)
    try:
        assert await client.list(PODS, api.ns, "memkube.dev/pool=none") == []
        assert slept == [7.0, 7.0]  # waited as asked, then got through
        proxy.rule = first(5, 429, after=False, method="GET", suffix="/pods")
        slept.clear()
        try:
            await client.list(PODS, api.ns, "memkube.dev/pool=none")
        except ApiError as exc:
            assert exc.status == 429 and exc.retry_after == 7.0
        else:
            raise AssertionError("throttled past the retries, yet no ApiError")
        assert slept == [7.0] * KubeApi.throttle_retries
    finally:
        await client.close()
        await proxy.stop()


async def test_the_login_runs_off_the_event_loop(api: ClusterApi) -> None:
    """A kubeconfig exec plugin blocks while it runs: the client must call the login in a
    thread, so the loop keeps serving everything else meanwhile."""
    import time

    from memkube_operator.kube import PODS, KubeApi

    def slow_login() -> kopf.ConnectionInfo:
        time.sleep(1.0)  # as a credential helper process would take
        return api.login()

    client = KubeApi(slow_login)
    try:
        async with LoopTicks() as loop:
            assert await client.get(PODS, api.ns, "absent") is None
    finally:
        await client.close()
    assert loop.ticks >= 10  # the loop ran during the 1 s login
