"""The Kubernetes API calls the operator makes, over aiohttp, and nothing else.

kopf watches and patches WorkerPools itself but creates nothing; this module gets, lists,
creates, deletes and patches children and posts Events. Credentials come from the same
login function kopf uses (:func:`kopf.login_via_client` in a cluster, a test double's
address in tests); a 401 re-logs in once, because in-cluster tokens rotate.

Errors are translated at the boundary: :class:`ApiError` carries the HTTP status and the
API's ``reason``; :meth:`ApiError.retryable` says whether backing off may help.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

from .crd import API_VERSION, GROUP, KIND, PLURAL, VERSION

log = logging.getLogger(__name__)
Login = Callable[[], kopf.ConnectionInfo]


class ApiError(Exception):
    """The API server refused a request or could not be reached (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Conflicts, throttling, server errors and unreachable servers are worth retrying."""
        return self.status in (0, 409, 429) or self.status >= 500


def pool_path(namespace: str, name: str | None = None, *, subresource: str = "") -> str:
    """URL path of WorkerPools (or one of them, or its subresource)."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    if name is not None:
        path += f"/{name}"
    return path + (f"/{subresource}" if subresource else "")


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    """URL path of a core/v1 collection (pods, services, secrets, events) or one object."""
    path = f"/api/v1/namespaces/{namespace}/{plural}"
    return path if name is None else f"{path}/{name}"


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data,
    )
    if info.certificate_path and info.private_key_path:
        context.load_cert_chain(str(info.certificate_path), str(info.private_key_path))
    return context


def _auth_headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


class KubeApi:
    """A small async client for the calls the reconciler makes."""

    def __init__(self, login: Login, *, timeout: float = 30.0) -> None:
        self._login = login
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._info: kopf.ConnectionInfo | None = None

    async def _connect(self) -> tuple[aiohttp.ClientSession, kopf.ConnectionInfo]:
        if self._session is None or self._info is None:
            self._info = self._login()
            connector = aiohttp.TCPConnector(ssl=_ssl_context(self._info), limit=32)
            self._session = aiohttp.ClientSession(
                base_url=self._info.server.rstrip("/") + "/",
                connector=connector,
                timeout=self._timeout,
                headers=_auth_headers(self._info),
            )
        return self._session, self._info

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the decoded JSON body, or :class:`ApiError`."""
        for attempt in (1, 2):
            session, _ = await self._connect()
            try:
                async with session.request(
                    method,
                    path.lstrip("/"),
                    json=body,
                    params=params,
                    headers={"Content-Type": content_type} if body is not None else None,
                ) as response:
                    if response.status == 401 and attempt == 1:
                        await self.close()  # log in again with fresh credentials
                        continue
                    text = await response.text()
                    payload = json.loads(text) if text else {}
                    if response.status >= 400:
                        payload = payload if isinstance(payload, dict) else {}
                        raise ApiError(
                            response.status,
                            str(payload.get("reason", response.reason)),
                            str(payload.get("message", "")),
                        )
                    result: dict[str, Any] = payload
                    return result
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                raise ApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from exc
        raise ApiError(401, "Unauthorized", f"{method} {path} after logging in again")

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str) -> list[dict[str, Any]]:
        """Objects of a collection matching the selector."""
        result = await self.request("GET", path, params={"labelSelector": label_selector})
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object (a 409 AlreadyExists surfaces as :class:`ApiError`)."""
        return await self.request("POST", path, body=body)

    async def delete(self, path: str, *, uid: str | None = None) -> bool:
        """Delete an object; False when it was already gone. ``uid`` guards against a
        same-named replacement."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", path, body=options)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (null removes a key)."""
        return await self.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
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
            await self.create(core_path(meta["namespace"], "events"), event)
        except ApiError as exc:
            # An Event is a courtesy: failing to post one must not fail the reconcile.
            log.warning("could not post event %s for %s: %s", reason, meta["name"], exc)
