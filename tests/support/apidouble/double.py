"""``ApiDouble``: start and stop the fake API server, and reach its state from tests.

Serves plain HTTP on 127.0.0.1 (a free port), writes a kubeconfig for kubectl and the
kubernetes/kopf clients, and offers direct access to objects (no HTTP, not logged), waiting
for a condition on an object (event-driven), and the kubelet stand-in. Runs in the test's own
event loop (``async with ApiDouble()``) or on a private loop in a thread
(``with ApiDouble.run_in_thread()``) for subprocesses such as kubectl or a separate operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import yaml
from aiohttp import web

from . import kubelet, lifecycle
from .registry import DEFAULT_NAMESPACES, MERGE_PATCH, Registry
from .requestlog import RequestLog
from .resources import ResourceType
from .server import ApiServer
from .store import Change

Predicate = Callable[[dict[str, Any] | None], bool]


class ApiDouble:
    def __init__(self, *, namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
                 bookmark_interval: float = 1.0, host: str = "127.0.0.1",
                 graceful_pods: bool = False) -> None:
        self.registry = Registry(namespaces, graceful_pods=graceful_pods)
        self.requests = RequestLog()
        self._server = ApiServer(self.registry, self.requests,
                                 bookmark_interval=bookmark_interval)
        self._host = host
        self._runner: web.AppRunner | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="apidouble-")
        self.url = ""
        self.kubeconfig_path = Path(self._tmp.name) / "kubeconfig"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(self._server.app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        port = self._runner.addresses[0][1]  # the free port the OS chose
        self.url = f"http://{self._host}:{port}"
        self._write_kubeconfig()

    async def stop(self) -> None:
        self._server.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._tmp.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def run_in_thread(cls, **options: Any) -> Iterator[ApiDouble]:
        """Serve from a private event loop in a daemon thread; for sync tests and subprocesses."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="apidouble", daemon=True)
        thread.start()

        async def make() -> ApiDouble:
            double = cls(**options)
            await double.start()
            return double

        double = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
        try:
            yield double
        finally:
            asyncio.run_coroutine_threadsafe(double.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "apidouble", "cluster": {"server": self.url}}],
            "users": [{"name": "apidouble", "user": {"token": "apidouble-token"}}],
            "contexts": [{"name": "apidouble", "context": {
                "cluster": "apidouble", "user": "apidouble", "namespace": "default"}}],
            "current-context": "apidouble",
        }
        self.kubeconfig_path.write_text(yaml.safe_dump(config))

    # --- direct access (no HTTP, not in the request log) ------------------------------------

    def resource_type(self, group: str, version: str, plural: str) -> ResourceType:
        return self.registry.resolve(group, version, plural)

    def _type_of(self, obj: dict[str, Any]) -> ResourceType:
        api_version, kind = obj["apiVersion"], obj["kind"]
        group, _, version = api_version.rpartition("/")
        for rt in self.registry.types():
            if (rt.group, rt.version, rt.kind) == (group, version, kind):
                return rt
        raise LookupError(f"no resource type serves {api_version} {kind}")

    def get_object(self, group: str, version: str, plural: str, namespace: str | None,
                   name: str) -> dict[str, Any] | None:
        rt = self.resource_type(group, version, plural)
        obj = self.registry.store.get(rt.key, namespace or "" if rt.namespaced else "", name)
        return self.registry.present(rt, obj) if obj is not None else None

    def objects(self, group: str, version: str, plural: str,
                namespace: str | None = None) -> list[dict[str, Any]]:
        rt = self.resource_type(group, version, plural)
        return [self.registry.present(rt, o)
                for o in self.registry.store.items(rt.key, namespace)]

    def create_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create from a manifest (apiVersion/kind pick the type), as a POST would; a
        namespaced manifest without a namespace goes to ``default``, as with kubectl."""
        rt = self._type_of(obj)
        namespace = (obj.get("metadata") or {}).get("namespace") or (
            "default" if rt.namespaced else "")
        return self.registry.create(rt, namespace, copy.deepcopy(obj))

    def apply_manifests(self, text_or_path: str | Path) -> list[dict[str, Any]]:
        """Create every document of a YAML file or string (CRDs first, in file order)."""
        text = Path(text_or_path).read_text() if isinstance(text_or_path, Path) else text_or_path
        docs = [d for d in yaml.safe_load_all(text) if d]
        docs.sort(key=lambda d: d.get("kind") != "CustomResourceDefinition")
        return [self.create_object(d) for d in docs]

    def patch_object(self, group: str, version: str, plural: str, namespace: str | None,
                     name: str, patch: dict[str, Any], subresource: str = "") -> dict[str, Any]:
        """A JSON merge patch, e.g. ``subresource="status"`` to play a controller."""
        rt = self.resource_type(group, version, plural)
        return self.registry.patch(rt, namespace or "", name, MERGE_PATCH, patch,
                                   subresource=subresource)

    def delete_object(self, group: str, version: str, plural: str, namespace: str | None,
                      name: str, propagation: str | None = None) -> dict[str, Any]:
        rt = self.resource_type(group, version, plural)
        return lifecycle.delete(self.registry, rt, namespace or "", name,
                                propagation=propagation)

    def compact(self) -> None:
        """Drop the watch history: watches from an older resourceVersion then get 410 Gone."""
        self.registry.store.compact()

    @property
    def resource_version(self) -> int:
        return self.registry.store.resource_version

    # --- kubelet stand-in -------------------------------------------------------------------

    def mark_pods_ready(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        return kubelet.mark_pods_ready(self.registry, namespace, selector)

    def finish_pod_terminations(self, namespace: str, selector: str = "") -> list[str]:
        """With ``graceful_pods=True``: let terminating pods go, as their kubelet would."""
        return kubelet.finish_pod_terminations(self.registry, namespace, selector)

    def set_oom_killed(self, namespace: str, pod: str,
                       container: str | None = None) -> dict[str, Any]:
        return kubelet.set_oom_killed(self.registry, namespace, pod, container)

    # --- waiting ----------------------------------------------------------------------------

    async def wait_for(self, group: str, version: str, plural: str, namespace: str | None,
                       name: str, predicate: Predicate,
                       timeout: float = 10.0) -> dict[str, Any] | None:
        """Wait until ``predicate(object or None)`` holds; woken by changes, not polling."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def listener(change: Change) -> None:
            loop.call_soon_threadsafe(changed.set)

        self.registry.store.subscribe(listener)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    obj = self.get_object(group, version, plural, namespace, name)
                    if predicate(obj):
                        return obj
                    await changed.wait()
        finally:
            self.registry.store.unsubscribe(listener)

    def wait_for_sync(self, group: str, version: str, plural: str, namespace: str | None,
                      name: str, predicate: Predicate,
                      timeout: float = 10.0) -> dict[str, Any] | None:
        """``wait_for`` for a thread-run double; raises TimeoutError when time runs out."""
        changed = threading.Event()

        def listener(change: Change) -> None:
            changed.set()

        deadline = time.monotonic() + timeout
        self.registry.store.subscribe(listener)
        try:
            while True:
                changed.clear()
                obj = self.get_object(group, version, plural, namespace, name)
                if predicate(obj):
                    return obj
                left = deadline - time.monotonic()
                if left <= 0 or not changed.wait(left):
                    raise TimeoutError(f"{plural}/{name}: condition not met in {timeout}s")
        finally:
            self.registry.store.unsubscribe(listener)
