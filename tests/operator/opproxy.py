"""A fault-injecting HTTP proxy in front of the real API server (loopback only).

Forwards every request, streaming responses so watches work, except those a rule picks:
those get an API ``Status`` error instead — before reaching the server (the request had no
effect) or after it (the request took effect but its answer was lost). Clients talk plain
HTTP to the proxy; the proxy talks TLS to the server with the credentials in ``ssl`` (the
admin's client certificate), dropping the client's own ``Authorization``. A 429 carries
``Retry-After: retry_after`` when that is set.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

Rule = Callable[[web.Request], tuple[int, bool] | None]
"""``request -> (status, after)`` to fail it (``after``: forward first, then fail), or None."""


@dataclass
class FaultProxy:
    target: str
    rule: Rule
    ssl: ssl_module.SSLContext | None = None
    retry_after: float | None = None
    injected: list[tuple[str, str, int]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else True),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _fail(self, request: web.Request, status: int) -> web.Response:
        self.injected.append((request.method, request.path, status))
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": status,
            "reason": {409: "Conflict", 429: "TooManyRequests"}.get(status, "InternalError"),
            "message": "injected by the test proxy",
        }
        headers = {}
        if status == 429 and self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return web.json_response(body, status=status, headers=headers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        verdict = self.rule(request)
        if verdict is not None and not verdict[1]:
            return self._fail(request, verdict[0])
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "authorization")
        }
        body = await request.read()
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            headers=headers,
            data=body or None,  # a GET with an (empty) body is refused by the real server
            skip_auto_headers=("Content-Type",),
        ) as upstream:
            if verdict is not None:
                await upstream.read()
                return self._fail(request, verdict[0])
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
