"""What tests do to the real API server directly (not through the operator).

:class:`Kube` is a small synchronous client over ``httpx`` with the admin credentials of a
:class:`~localkube.plane.ControlPlane` (or any certificate or token): get, list, create,
patch, delete by ``(group, version, plural, namespace, name)``, apply a YAML file, and two
writes a kubelet would make — :meth:`Kube.mark_pods_ready` and :meth:`Kube.set_oom_killed`
write pod status through the ``status`` subresource, since no node runs the pods.
:meth:`Kube.until` waits for a condition, re-checking on every watch event of the
namespace's pods and WorkerPools (and every ``recheck`` seconds in case a check depends on
something else). Errors: :class:`KubeError` with the HTTP status, the API's reason and
message, and the field causes of a 422.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

_ips = itertools.count(1)
Obj = dict[str, Any]


class KubeError(Exception):
    def __init__(self, status: int, body: Mapping[str, Any] | str, what: str) -> None:
        payload = body if isinstance(body, Mapping) else {}
        self.status = status
        self.reason = str(payload.get("reason", ""))
        self.message = str(payload.get("message", body if isinstance(body, str) else ""))
        self.causes: list[dict[str, Any]] = list((payload.get("details") or {}).get("causes") or [])
        super().__init__(f"{what}: {status} {self.reason}: {self.message}")


def path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """Direct API access for tests (admin unless given other credentials)."""

    def __init__(
        self,
        server: str,
        ca: Path,
        *,
        cert: tuple[Path, Path] | None = None,
        token: str | None = None,
    ) -> None:
        self.server = server
        self.ca = ca
        self.cert = cert
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        context = ssl.create_default_context(cafile=str(ca))
        if cert:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.http = httpx.Client(base_url=server, verify=context, headers=headers, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    # ----- plain REST ----------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if body is not None else {}
        resp = self.http.request(method, url, content=content, params=params, headers=headers)
        if resp.status_code >= 400:
            try:
                payload: Any = resp.json()
            except ValueError:
                payload = resp.text
            raise KubeError(resp.status_code, payload, f"{method} {url}")
        return resp.json() if resp.content else {}

    def get_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> Obj | None:
        try:
            result: Obj = self.request("GET", path(group, version, plural, namespace, name))
            return result
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def objects(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        selector: str = "",
    ) -> list[Obj]:
        params = {"labelSelector": selector} if selector else None
        result = self.request("GET", path(group, version, plural, namespace), params=params)
        items: list[Obj] = result.get("items") or []
        return items

    def create_object(self, obj: Mapping[str, Any], *, plural: str | None = None) -> Obj:
        group, version = _group_version(obj["apiVersion"])
        plural = plural or self.plural_of(obj["apiVersion"], obj["kind"])
        namespace = (
            (obj.get("metadata") or {}).get("namespace")
            if self.namespaced(group, version, plural)
            else None
        )
        result: Obj = self.request("POST", path(group, version, plural, namespace), body=obj)
        return result

    def patch_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> Obj:
        result: Obj = self.request(
            "PATCH",
            path(group, version, plural, namespace, name, subresource),
            body=patch,
            content_type={
                "merge": "application/merge-patch+json",
                "json": "application/json-patch+json",
                "strategic": "application/strategic-merge-patch+json",
            }[patch_type],
        )
        return result

    def delete_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
    ) -> bool:
        body = {"propagationPolicy": propagation} if propagation else None
        try:
            self.request("DELETE", path(group, version, plural, namespace, name), body=body)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def apply_manifests(self, file: str | Path, namespace: str | None = None) -> list[Obj]:
        """Create every document of a YAML file (``namespace`` fills namespaced ones)."""
        out = []
        for doc in yaml.safe_load_all(Path(file).read_text()):
            if not doc:
                continue
            doc = copy.deepcopy(doc)
            if namespace and "namespace" not in doc.setdefault("metadata", {}):
                doc["metadata"]["namespace"] = namespace
            out.append(self.create_object(doc))
        return out

    # ----- discovery -----------------------------------------------------------------------
    _discovery: dict[str, list[Obj]]

    def _resources(self, api_version: str) -> list[Obj]:
        if not hasattr(self, "_discovery"):
            self._discovery = {}
        if api_version not in self._discovery:
            url = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            self._discovery[api_version] = self.request("GET", url)["resources"]
        return self._discovery[api_version]

    def plural_of(self, api_version: str, kind: str) -> str:
        for res in self._resources(api_version):
            if res["kind"] == kind and "/" not in res["name"]:
                name: str = res["name"]
                return name
        self._discovery.pop(api_version, None)
        raise KeyError(f"no resource of kind {kind} in {api_version}")

    def namespaced(self, group: str, version: str, plural: str) -> bool:
        api_version = f"{group}/{version}" if group else version
        return any(r["name"] == plural and r["namespaced"] for r in self._resources(api_version))

    # ----- namespaces ----------------------------------------------------------------------
    def make_namespace(self, prefix: str = "t", *, enforce: str = "restricted") -> str:
        """A fresh namespace with PodSecurity ``enforce`` (and warn, audit) labels; returns
        once its ``default`` ServiceAccount exists, so pods can be created in it."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        labels = {f"pod-security.kubernetes.io/{m}": enforce for m in ("enforce", "warn", "audit")}
        self.create_object(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        )
        deadline = time.monotonic() + 60
        while self.get_object("", "v1", "serviceaccounts", name, "default") is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no default ServiceAccount in {name}")
            time.sleep(0.05)
        return name

    def delete_namespace(self, name: str) -> None:
        self.delete_object("", "v1", "namespaces", None, name)

    # ----- what a kubelet would write ------------------------------------------------------
    def mark_pods_ready(self, namespace: str, selector: str = "") -> list[Obj]:
        """Report every matching, not-deleting pod Running and Ready, through ``pods/status``
        (no node runs them: this is the kubelet's part, written by the test). Pods are
        written concurrently, as each node's kubelet would."""
        from concurrent.futures import ThreadPoolExecutor

        names = [
            p["metadata"]["name"]
            for p in self.objects("", "v1", "pods", namespace, selector)
            if not p["metadata"].get("deletionTimestamp")
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            written = list(
                pool.map(lambda name: self._update_status(namespace, name, ready_status), names)
            )
        return [w for w in written if w is not None]

    def set_oom_killed(self, namespace: str, name: str, container: str | None = None) -> Obj:
        """Report a container OOM-killed (exit 137) and restarted, as the kubelet does."""

        def killed(pod: Obj) -> Obj:
            status = pod.get("status") or {}
            if not status.get("containerStatuses"):
                status = ready_status(pod)
            stamp = now()
            target = next(
                (c for c in status["containerStatuses"] if container in (None, c["name"])), None
            )
            if target is None:
                raise KeyError(f"pod {namespace}/{name} has no container {container!r}")
            target["lastState"] = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "OOMKilled",
                    "startedAt": stamp,
                    "finishedAt": stamp,
                    "containerID": target["containerID"],
                }
            }
            target["restartCount"] = int(target.get("restartCount", 0)) + 1
            target["state"] = {"running": {"startedAt": stamp}}
            return status

        written = self._update_status(namespace, name, killed)
        if written is None:
            raise KubeError(404, f"pod {namespace}/{name} is gone", "set_oom_killed")
        return written

    def _update_status(self, namespace: str, name: str, change: Callable[[Obj], Obj]) -> Obj | None:
        """Read, change and write a pod's status, again on a conflict (the scheduler writes
        its PodScheduled condition meanwhile); None when the pod is gone."""
        url = path("", "v1", "pods", namespace, name)
        for _ in range(10):
            pod = self.get_object("", "v1", "pods", namespace, name)
            if pod is None:
                return None
            try:
                result: Obj = self.request(
                    "PUT", url + "/status", body={**pod, "status": change(pod)}
                )
                return result
            except KubeError as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise
        raise TimeoutError(f"status of pod {namespace}/{name} kept conflicting")

    # ----- waiting -------------------------------------------------------------------------
    def until(
        self,
        check: Callable[[], bool],
        namespace: str,
        timeout: float = 30.0,
        *,
        recheck: float = 1.0,
        watch: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Block until ``check()`` holds; re-checked on each event of the namespace's pods and
        WorkerPools (and ``watch``'s extra resources), and every ``recheck`` seconds."""
        if check():
            return
        changed = threading.Event()
        stop = threading.Event()
        resources = [("", "v1", "pods"), ("memkube.dev", "v1alpha1", "workerpools"), *watch]
        threads = [
            threading.Thread(target=self.watch, args=(r, namespace, changed.set, stop), daemon=True)
            for r in resources
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout
        try:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                changed.wait(min(left, recheck))
                changed.clear()
        finally:
            stop.set()

    def watch(
        self,
        resource: tuple[str, str, str],
        namespace: str,
        on_event: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """Call ``on_event()`` for every watch event of a resource in the namespace until
        ``stop`` is set (checked at each event, and every 5 s when the server ends the watch
        and it is opened again)."""
        url = path(*resource, namespace)
        while not stop.is_set():
            params = {"watch": "true", "timeoutSeconds": "5"}
            try:
                with self.http.stream(
                    "GET", url, params=params, timeout=httpx.Timeout(5.0, read=None)
                ) as resp:
                    for _ in resp.iter_lines():
                        if stop.is_set():
                            return
                        on_event()
            except httpx.HTTPError:
                if stop.is_set():
                    return
                on_event()
                stop.wait(0.5)

    async def until_async(
        self, check: Callable[[], bool], namespace: str, timeout: float = 30.0, **kw: Any
    ) -> None:
        import asyncio

        await asyncio.to_thread(self.until, check, namespace, timeout, **kw)


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def ready_status(pod: Obj) -> Obj:
    """The status a kubelet reports for a pod whose containers all run and are ready."""
    status = copy.deepcopy(pod.get("status") or {})
    stamp = now()
    previous = {c["name"]: c for c in status.get("containerStatuses") or []}
    uid = pod["metadata"]["uid"]
    containers = []
    for c in pod["spec"]["containers"]:
        old = previous.get(c["name"], {})
        entry: Obj = {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "containerID": f"containerd://{uid[:8]}-{c['name']}",
            "ready": True,
            "started": True,
            "restartCount": int(old.get("restartCount", 0)),
            "state": {"running": {"startedAt": stamp}},
        }
        if old.get("lastState"):
            entry["lastState"] = old["lastState"]
        containers.append(entry)
    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
    ]
    ip = status.get("podIP") or f"127.0.1.{next(_ips) % 250 + 1}"
    status.update(
        phase="Running",
        conditions=conditions,
        containerStatuses=containers,
        podIP=ip,
        podIPs=[{"ip": ip}],
        hostIP="127.0.0.1",
        hostIPs=[{"ip": "127.0.0.1"}],
        startTime=status.get("startTime", stamp),
    )
    return status
