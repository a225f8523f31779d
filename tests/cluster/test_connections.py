"""Connection limits of memkube's HTTP servers (``memkube.serving``), with tight settings so
the deadlines show within a second: silent, trickling and stalled connections are closed;
over the cap, unproven connections make room, so probes and real clients are still served;
an authenticated websocket outlives every deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import rawhttp
from aiohttp import web
from certs import make_certs
from memkube.security import Auth, TLSConfig
from memkube.serving import HTTPLimits, RateLimitFilter, start_server

TOKEN = "connections-test-token-0123456789"
LIMITS = HTTPLimits(header_timeout=0.6, body_timeout=0.6, idle_timeout=1.5,
                    max_connections=64, max_untrusted=16)


@dataclass
class Served:
    url: str
    runner: web.AppRunner


@contextlib.asynccontextmanager
async def serve(limits: HTTPLimits = LIMITS) -> AsyncIterator[Served]:
    auth = Auth(TOKEN)
    app = web.Application(middlewares=[auth.middleware()])

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_bytes(msg.data)
        return sock

    app.add_routes([web.get("/health", health), web.post("/echo", echo), web.get("/ws", ws)])
    runner, port = await start_server(app, "127.0.0.1", 0, TLSConfig(), limits)
    try:
        yield Served(f"http://127.0.0.1:{port}", runner)
    finally:
        await runner.cleanup()


async def test_a_silent_connection_is_closed_after_the_header_deadline() -> None:
    async with serve() as s:
        reader, writer = await rawhttp.open_silent(s.url)
        started = time.monotonic()
        assert await rawhttp.is_closed_by_peer(reader, timeout=5)
        assert 0.4 < time.monotonic() - started < 3
        writer.close()


async def test_trickled_headers_do_not_extend_the_deadline() -> None:
    async with serve() as s:
        reader, writer = await rawhttp.open_silent(s.url)
        started = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(trickle())
        assert await rawhttp.is_closed_by_peer(reader, timeout=5)
        assert time.monotonic() - started < 3
        sender.cancel()
        writer.close()


async def test_a_stalled_body_is_closed_after_the_body_deadline() -> None:
    async with serve() as s:
        reader, writer = await rawhttp.open_silent(s.url)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        started = time.monotonic()
        assert await rawhttp.is_closed_by_peer(reader, timeout=5)
        assert time.monotonic() - started < 3
        writer.close()


async def test_idle_keepalive_connections_are_closed() -> None:
    async with serve() as s, aiohttp.ClientSession() as http:
        async with http.get(s.url + "/health") as r:
            assert r.status == 200
        await asyncio.sleep(LIMITS.header_timeout * 3)
        # the pooled connection was closed by the server: a new request still works
        async with http.get(s.url + "/health") as r:
            assert r.status == 200


async def test_over_the_cap_probes_and_real_clients_are_still_served() -> None:
    limits = HTTPLimits(header_timeout=30, body_timeout=30, idle_timeout=30,
                        max_connections=64, max_untrusted=16)
    async with serve(limits) as s:
        silent = [await rawhttp.open_silent(s.url) for _ in range(80)]
        await asyncio.sleep(0.2)
        closed = 0
        for reader, _ in silent:
            if await rawhttp.is_closed_by_peer(reader, timeout=0.01):
                closed += 1
        assert closed >= 80 - limits.max_untrusted
        assert (await rawhttp.request(s.url, "GET", "/health", timeout=5)).status == 200
        body = b"payload"
        r = await rawhttp.request(s.url, "POST", "/echo",
                                  {"Authorization": f"Bearer {TOKEN}"}, body, timeout=5)
        assert (r.status, r.body) == (200, body)
        for _, writer in silent:
            writer.close()


async def test_an_authenticated_websocket_outlives_every_deadline() -> None:
    async with serve() as s, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {TOKEN}"}) as http, \
            http.ws_connect(s.url + "/ws") as ws:
        # a flood of unproven connections meanwhile must not evict it
        silent = [await rawhttp.open_silent(s.url) for _ in range(40)]
        await asyncio.sleep(LIMITS.idle_timeout + LIMITS.header_timeout * 2)
        await ws.send_bytes(b"still here")
        assert (await ws.receive(timeout=5)).data == b"still here"
        for _, writer in silent:
            writer.close()


def test_repeated_log_records_are_rate_limited() -> None:
    clock = [0.0]
    flt = RateLimitFilter(burst=3, interval=10.0, clock=lambda: clock[0])
    record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1,
                               "socket.accept() out of system resource\nsocket: <fd=5>", (), None)
    passed = [flt.filter(record) for _ in range(1000)]
    assert sum(passed) == 3
    clock[0] += 11.0
    assert flt.filter(record)
    assert "997 similar" in str(record.msg)
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "different %s", ("a",), None)
    assert flt.filter(other)


@pytest.mark.parametrize("header_timeout", [0.6])
async def test_a_tls_handshake_that_never_starts_is_closed(header_timeout: float,
                                                            tmp_path: Path) -> None:
    tls = make_certs(tmp_path)
    auth = Auth(TOKEN)
    app = web.Application(middlewares=[auth.middleware()])
    runner, port = await start_server(app, "127.0.0.1", 0, tls,
                                      HTTPLimits(header_timeout=header_timeout))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await rawhttp.is_closed_by_peer(reader, timeout=10)
        assert time.monotonic() - started < 5
        writer.close()
    finally:
        await runner.cleanup()
