"""The operator's client for a pool scheduler's HTTP API (docs/internals.md).

Three calls: the pool snapshot (memory figures for status), retirement (scale-down and
rolling) and event reports (OOM kills for the dashboard timeline). Errors come out as
memkube's own: :class:`~memkube.errors.CommError` when the scheduler cannot be reached,
:class:`~memkube.errors.AuthenticationError` on 401, :class:`~memkube.errors.RetireError`
when it refuses to retire (409: the others cannot take the data).

Not covered: where the scheduler is (``SchedulerAccess.url``, a settings hook).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

import aiohttp
from memkube.errors import AuthenticationError, CommError, ProtocolError, RetireError

from .settings import SchedulerAccess


class RetireRequest(TypedDict):
    """``POST /api/v1/retire`` body: ``names`` or ``n``."""

    names: NotRequired[list[str]]
    n: NotRequired[int]


class EventReport(TypedDict):
    """``POST /api/v1/events`` body."""

    kind: str
    worker: str
    message: str


class SchedulerClient:
    """Calls one scheduler at ``base_url`` with the pool's token."""

    def __init__(self, base_url: str, token: str, access: SchedulerAccess) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._access = access

    async def _call(self, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        url = f"{self.base_url}{path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.request(method, url, json=body, headers=self._headers) as response,
            ):
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CommError(f"scheduler at {self.base_url} unreachable: {exc!r}") from exc
        if status == 401:
            raise AuthenticationError(f"scheduler at {self.base_url} rejected the pool token")
        try:
            payload = json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"{method} {path}: not JSON: {text[:200]!r}") from exc
        return status, payload

    async def pool(self) -> dict[str, Any]:
        """The pool snapshot (``GET /api/v1/pool``)."""
        status, payload = await self._call(
            "GET", "/api/v1/pool", None, self._access.request_timeout
        )
        if status != 200 or not isinstance(payload, dict):
            raise CommError(f"GET /api/v1/pool answered {status}")
        return payload

    async def retire(self, *, names: Sequence[str] = (), n: int = 0) -> list[str]:
        """Retire workers by name or by count; the names the scheduler retired."""
        body = RetireRequest(names=list(names)) if names else RetireRequest(n=n)
        status, payload = await self._call(
            "POST", "/api/v1/retire", body, self._access.retire_timeout
        )
        if status == 409:
            raise RetireError(str(payload.get("error", "the scheduler refused to retire")))
        if status != 200:
            raise CommError(f"POST /api/v1/retire answered {status}: {payload!r}"[:300])
        try:
            return [str(worker["name"]) for worker in payload["retired"]]
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed retire answer: {payload!r}"[:300]) from exc

    async def report(self, event: EventReport) -> None:
        """Tell the scheduler what the operator saw (``POST /api/v1/events``)."""
        status, _ = await self._call("POST", "/api/v1/events", event, self._access.request_timeout)
        if status >= 300:
            raise CommError(f"POST /api/v1/events answered {status}")
