"""A fault-injecting HTTP proxy in front of the API double (loopback only).

Forwards every request, streaming responses so watches work, except those a rule picks:
those get an API ``Status`` error instead — before reaching the double (the request had no
effect) or after it (the request took effect but its answer was lost).
"""

from __future__ import annotations

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
    injected: list[tuple[str, str, int]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
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
        return web.json_response(body, status=status)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        verdict = self.rule(request)
        if verdict is not None and not verdict[1]:
            return self._fail(request, verdict[0])
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            headers=headers,
            data=await request.read(),
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
