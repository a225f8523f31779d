"""The Kubernetes API calls the operator makes, through ``kubernetes_asyncio``, and nothing else.

kopf watches and patches WorkerPools itself but creates nothing; this module gets, lists,
creates, deletes and patches children, patches WorkerPool status and posts Events, with the
generated client of the Kubernetes project (``kubernetes_asyncio``). Bodies go in and come
out as plain dicts (the builders' manifests; ``_preload_content=False`` skips the model
classes), so what is sent is exactly what was built.

Credentials come from the same login function kopf uses (:func:`kopf.login_via_client` in a
cluster, a test's kubeconfig or token): it is called in a worker thread, never on the event
loop, because a kubeconfig's ``exec`` plugin (cloud credential helpers) runs a process and
blocks. A 401 logs in again once (bound tokens rotate).

Errors are translated at the boundary into :class:`ApiError`, a
:class:`memkube.errors.MemkubeError` carrying the HTTP status, the API's ``reason`` and the
``Retry-After`` the server asked for. A 429 (throttling, API priority and fairness) or 503
with ``Retry-After`` is retried here after sleeping that long (at most
:attr:`KubeApi.max_retry_after` each, :attr:`KubeApi.throttle_retries` times); past that
the error carries ``retry_after`` so the reconciler backs off at least that long.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from memkube.errors import MemkubeError

from .crd import API_VERSION, GROUP, KIND, PLURAL, VERSION

log = logging.getLogger(__name__)
Login = Callable[[], kopf.ConnectionInfo]
Sleep = Callable[[float], Awaitable[None]]


class ApiError(MemkubeError):
    """The API server refused a request or could not be reached (``status`` 0)."""

    def __init__(
        self, status: int, reason: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Conflicts, throttling, server errors and unreachable servers are worth retrying."""
        return self.status in (0, 409, 429) or self.status >= 500


@dataclass(frozen=True)
class Kind:
    """A resource the operator touches: core/v1 (``singular`` names the client's methods) or
    the WorkerPool custom resource."""

    plural: str
    singular: str = ""

    @property
    def custom(self) -> bool:
        return self.plural == PLURAL


PODS = Kind("pods", "pod")
SERVICES = Kind("services", "service")
SECRETS = Kind("secrets", "secret")
EVENTS = Kind("events", "event")
WORKERPOOLS = Kind(PLURAL)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _translate(status: int, text: str, headers: Any) -> ApiError:
    try:
        payload = json.loads(text) if text else {}
    except json.JSONDecodeError:
        payload = {}
    payload = payload if isinstance(payload, dict) else {}
    reason = str(payload.get("reason") or status)
    return ApiError(
        status,
        reason,
        str(payload.get("message") or text[:300]),
        retry_after=_retry_after(headers),
    )


def _configuration(info: kopf.ConnectionInfo, files: list[str]) -> k8s.Configuration:
    """A client configuration from kopf's connection info (CA and keys as data or paths)."""

    def as_file(data: str | bytes | None, path: object, suffix: str) -> str | None:
        if path:
            return str(path)
        if not data:
            return None
        raw = data.encode() if isinstance(data, str) else data
        fd, name = tempfile.mkstemp(prefix="memkube-kube-", suffix=suffix)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        files.append(name)
        return name

    config = k8s.Configuration(host=info.server.rstrip("/"))
    config.verify_ssl = not info.insecure
    config.ssl_ca_cert = as_file(info.ca_data, info.ca_path, ".crt")
    config.cert_file = as_file(info.certificate_data, info.certificate_path, ".crt")
    config.key_file = as_file(info.private_key_data, info.private_key_path, ".key")
    if info.token:
        config.api_key = {"BearerToken": f"{info.scheme or 'Bearer'} {info.token}"}
    elif info.username and info.password:
        config.username, config.password = info.username, info.password
    return config


class KubeApi:
    """The calls the reconciler makes, as dicts in and dicts out."""

    throttle_retries = 3
    max_retry_after = 30.0

    def __init__(
        self, login: Login, *, timeout: float = 30.0, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._login = login
        self._timeout = timeout
        self._sleep = sleep
        self._client: k8s.ApiClient | None = None
        self._files: list[str] = []
        self._connecting = asyncio.Lock()

    async def _connect(self) -> k8s.ApiClient:
        async with self._connecting:
            if self._client is None:
                # The login may run a kubeconfig exec plugin: keep it off the event loop.
                info = await asyncio.to_thread(self._login)
                self._client = k8s.ApiClient(_configuration(info, self._files))
            return self._client

    async def close(self) -> None:
        """Close the connection pool (and remove any credential files written for it)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        for name in self._files:
            try:
                os.unlink(name)
            except OSError:
                pass
        self._files.clear()

    async def _call(
        self,
        method: str,
        kind: Kind,
        namespace: str,
        name: str | None = None,
        *body: Any,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """One API call by the generated client's ``method`` name (``*`` stands for the
        resource); its decoded JSON body. Core methods take ``(name, namespace, body)``,
        custom-object ones ``(group, version, namespace, plural, name, body)``."""
        throttled = 0
        relogged = False
        named = () if name is None else (name,)
        while True:
            api_client = await self._connect()
            if kind.custom:
                api: Any = k8s.CustomObjectsApi(api_client)
                function = method.replace("*", "custom_object")
                args: tuple[Any, ...] = (GROUP, VERSION, namespace, PLURAL, *named, *body)
            else:
                api = k8s.CoreV1Api(api_client)
                function = method.replace("*", kind.singular)
                args = (*named, namespace, *body)
            try:
                response = await getattr(api, function)(
                    *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
                )
                async with response:
                    text = await response.text()
                    status, headers = response.status, response.headers
            except ApiException as exc:  # raised by the client before any response
                text, status, headers = str(exc.body or ""), int(exc.status or 0), exc.headers
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise ApiError(0, "Unreachable", f"{function}: {exc!r}") from exc
            if status < 400:
                try:
                    result: dict[str, Any] = json.loads(text) if text else {}
                except json.JSONDecodeError as exc:
                    raise ApiError(status, "BadResponse", text[:300]) from exc
                return result
            error = _translate(status, text, headers)
            if status == 401 and not relogged:
                relogged = True
                await self.close()  # log in again with fresh credentials
                continue
            if (
                status in (429, 503)
                and error.retry_after is not None
                and throttled < self.throttle_retries
            ):
                throttled += 1
                delay = min(error.retry_after, self.max_retry_after)
                log.info("API server asks to retry %s after %.1f s", function, delay)
                await self._sleep(delay)
                continue
            raise error

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        method = "get_namespaced_*" if kind.custom else "read_namespaced_*"
        try:
            return await self._call(method, kind, namespace, name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: Kind, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Objects of a collection matching the selector."""
        result = await self._call(
            "list_namespaced_*", kind, namespace, None, label_selector=label_selector
        )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object (a 409 AlreadyExists surfaces as :class:`ApiError`)."""
        return await self._call("create_namespaced_*", kind, namespace, None, dict(body))

    async def delete(
        self, kind: Kind, namespace: str, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete an object; False when it was already gone. ``uid`` guards against a
        same-named replacement."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self._call("delete_namespaced_*", kind, namespace, name, body=options)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def merge_patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        status: bool = False,
    ) -> dict[str, Any]:
        """A JSON merge patch (null removes a key), of the ``status`` subresource if asked."""
        method = "patch_namespaced_*" + ("_status" if status else "")
        return await self._call(
            method, kind, namespace, name, dict(patch), _content_type="application/merge-patch+json"
        )

    async def post_event(
        self, pool: Mapping[str, Any], *, reason: str, message: str, warning: bool = False
    ) -> None:
        """A core/v1 Event about a WorkerPool (shows in ``kubectl describe wp``)."""
        meta = pool["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "memkube-operator"},
            "reportingComponent": "memkube.dev/operator",
            "reportingInstance": "memkube-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.create(EVENTS, meta["namespace"], event)
        except ApiError as exc:
            # An Event is a courtesy: failing to post one must not fail the reconcile.
            log.warning("could not post event %s for %s: %s", reason, meta["name"], exc)
