"""kopf runs against the double: reacts to create/update/delete, patches status, and its watch
streams (list, then watch from the list's resourceVersion) never replay old events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from apidouble import ApiDouble
from apidouble.testing import Http

GROUP, VERSION, PLURAL = "example.test", "v1", "widgets"


class Seen:
    """What the handlers saw, with an event to wait on instead of polling."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.changed = asyncio.Event()

    def add(self, kind: str, name: str, value: Any = None) -> None:
        self.calls.append((kind, name, value))
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while len(self.calls) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running_operator(api: ApiDouble, seen: Seen) -> AsyncIterator[None]:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.connect_timeout = 5
        settings.networking.request_timeout = 10

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url, scheme="Bearer", token="apidouble-token")

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def created(name: str, spec: Any, patch: kopf.Patch, **_: Any) -> None:
        patch.status["replicas"] = spec["replicas"]
        seen.add("create", name, spec["replicas"])

    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec.replicas", registry=registry)
    def updated(name: str, new: Any, patch: kopf.Patch, **_: Any) -> None:
        patch.status["replicas"] = new
        seen.add("update", name, new)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def deleted(name: str, **_: Any) -> None:
        seen.add("delete", name)

    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=registry, standalone=True, clusterwide=True, stop_flag=stop,
        ready_flag=ready))
    try:
        async with asyncio.timeout(15):
            await ready.wait()
        yield
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task


@pytest.mark.slow
async def test_kopf_operator_reacts_and_does_not_replay(api: ApiDouble, http: Http,
                                                        widgets: str) -> None:
    # An object that exists before the operator starts is handled once, at startup.
    await http.post(widgets, {"metadata": {"name": "early"}, "spec": {"size": "1Gi"}})
    seen = Seen()
    async with running_operator(api, seen):
        await seen.wait_for(1)
        await http.post(widgets, {"metadata": {"name": "w"},
                                  "spec": {"size": "1Gi", "replicas": 2}})
        await seen.wait_for(2)
        w = await api.wait_for(GROUP, VERSION, PLURAL, "default", "w",
                               lambda o: bool(o and o.get("status", {}).get("replicas") == 2))
        assert w is not None
        # kopf keeps its state in annotations and a finalizer (because of the delete handler)
        assert any("kopf" in f for f in w["metadata"].get("finalizers", []))

        await http.patch(f"{widgets}/w", {"spec": {"replicas": 3}})
        await seen.wait_for(3)
        await api.wait_for(GROUP, VERSION, PLURAL, "default", "w",
                           lambda o: bool(o and o.get("status", {}).get("replicas") == 3))

        await http.delete(f"{widgets}/w")
        await seen.wait_for(4)
        gone = await api.wait_for(GROUP, VERSION, PLURAL, "default", "w", lambda o: o is None)
        assert gone is None
        # Every watch after the first list started from that list's resourceVersion.
        watches = [r for r in api.requests if r["verb"] == "watch"
                   and r["resource"] == PLURAL]
        assert watches and all("resourceVersion=" in r["query"] for r in watches)

    assert seen.calls == [("create", "early", 1), ("create", "w", 2), ("update", "w", 3),
                          ("delete", "w", None)]
    # kopf's own writes went through the status subresource or merge patches.
    perms = api.requests.permissions()
    assert (GROUP, PLURAL, "patch") in perms and (GROUP, PLURAL, "watch") in perms


@pytest.mark.slow
async def test_kopf_watches_pods_and_sees_kubelet_reports(api: ApiDouble, http: Http) -> None:
    registry = kopf.OperatorRegistry()
    oom = asyncio.Event()
    seen_types: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url, scheme="Bearer", token="apidouble-token")

    @kopf.on.event("", "v1", "pods", registry=registry)
    def pod_event(type: str, status: Any, **_: Any) -> None:
        seen_types.append(type)
        for container in (status or {}).get("containerStatuses") or []:
            if (container.get("lastState") or {}).get("terminated", {}).get(
                    "reason") == "OOMKilled":
                oom.set()

    await http.post("/api/v1/namespaces/default/pods", {
        "metadata": {"name": "w-0"},
        "spec": {"containers": [{"name": "worker", "image": "memkube:1"}]}})
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(kopf.operator(registry=registry, standalone=True,
                                             clusterwide=True, stop_flag=stop,
                                             ready_flag=ready))
    try:
        async with asyncio.timeout(15):
            await ready.wait()
            await asyncio.to_thread(api.requests.wait_for, lambda r: r["verb"] == "watch"
                                    and r["resource"] == "pods")
            api.mark_pods_ready("default")
            api.set_oom_killed("default", "w-0")
            await oom.wait()
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    assert seen_types[0] is None  # the initial listing
    assert set(seen_types[1:]) == {"MODIFIED"}
