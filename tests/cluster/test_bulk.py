"""memkube.bulk: data answers read straight into their buffer, against real servers: an
aiohttp app (as workers and the scheduler serve), and raw asyncio servers that answer as a
broken or hostile peer would."""

from __future__ import annotations

import asyncio
import mmap
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from memkube import bulk
from memkube.addresses import Address
from memkube.bulk import UNSIZED_LIMIT, BulkClient
from memkube.errors import ProtocolError
from memkube.security import Auth, TLSConfig

TOKEN_HEADERS = {"Authorization": "Bearer secret"}


@asynccontextmanager
async def app_server(app: web.Application, tls: TLSConfig | None = None
                     ) -> AsyncIterator[Address]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0,
                       ssl_context=tls.server_context() if tls else None)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Address("tls" if tls else "tcp", "127.0.0.1", port)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                      Awaitable[None]]) -> AsyncIterator[Address]:
    """A server that reads the request's head and then does what ``answer`` does."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield Address("tcp", "127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()


def echo_app() -> web.Application:
    """``POST /data``: the body back, repeated ``n`` times (a query parameter); 401 without
    the token."""
    async def data(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != TOKEN_HEADERS["Authorization"]:
            return web.Response(status=401, text="token needed")
        body = await request.read()
        return web.Response(body=body * int(request.query.get("n", "1")))

    app = web.Application()
    app.router.add_post("/data", data)
    return app


async def test_a_large_answer_arrives_whole_in_one_huge_page_advised_buffer() -> None:
    client = BulkClient(TOKEN_HEADERS, None)
    piece = os.urandom(1 << 16)
    async with app_server(echo_app()) as address:
        answer = await client.post(address, "/data?n=96", piece)
        assert answer.status == 200
        assert len(answer.body) == 96 * len(piece)
        assert bytes(answer.body) == piece * 96
        # one buffer of the declared length, a private mapping (not a joined copy)
        assert isinstance(answer.body.obj, mmap.mmap)
        small = await client.post(address, "/data", b"tiny")
        assert bytes(small.body) == b"tiny"
        assert len((await client.post(address, "/data", b"")).body) == 0


async def test_the_token_is_presented_and_a_refusal_is_an_answer() -> None:
    async with app_server(echo_app()) as address:
        refused = await BulkClient({}, None).post(address, "/data", b"x")
        assert refused.status == 401
        assert bytes(refused.body) == b"token needed"


async def test_over_tls_with_the_pool_ca(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    from certs import make_certs

    tls = make_certs(tmp_path)
    piece = os.urandom(1 << 20)
    async with app_server(echo_app(), tls) as address:
        client = BulkClient.for_pool(Auth("secret"), tls)
        answer = await client.post(address, "/data?n=8", piece)
        assert answer.status == 200 and bytes(answer.body) == piece * 8
        # a client that does not present the CA's certificate is refused by the server
        with pytest.raises((OSError, ProtocolError)):
            await BulkClient(TOKEN_HEADERS, None).post(address, "/data", b"x")


async def test_a_body_shorter_than_its_length_is_an_error() -> None:
    async def short(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 5000)
        await w.drain()

    async with raw_server(short) as address:
        with pytest.raises(ProtocolError, match="shorter"):
            await BulkClient({}, None).post(address, "/data", b"")


async def test_bytes_past_the_declared_length_are_not_taken() -> None:
    async def longer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA")
        await w.drain()

    async with raw_server(longer) as address:
        answer = await BulkClient({}, None).post(address, "/data", b"")
        assert bytes(answer.body) == b"abcd"


@pytest.mark.parametrize("garbage", [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: nine\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * (64 << 10),  # a head that never ends
])
async def test_an_answer_that_is_not_http_is_a_protocol_error(garbage: bytes) -> None:
    async def send(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(garbage)
        await w.drain()
        await asyncio.sleep(5)  # the client decides, not the close

    async with raw_server(send) as address:
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(BulkClient({}, None).post(address, "/data", b""), 3)


async def test_a_length_beyond_any_memory_is_refused_not_allocated() -> None:
    async def boast(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 62))
        await w.drain()
        await asyncio.sleep(5)

    async with raw_server(boast) as address:
        with pytest.raises(ProtocolError, match="cannot hold"):
            await asyncio.wait_for(BulkClient({}, None).post(address, "/data", b""), 3)


async def test_an_answer_without_a_length_is_read_up_to_a_limit() -> None:
    async def chunked(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await w.drain()

    async def until_close(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await w.drain()

    async def endless(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b"z" * (1 << 16))
        for _ in range(2 * UNSIZED_LIMIT >> 16):
            w.write(chunk)
            await w.drain()

    client = BulkClient({}, None)
    async with raw_server(chunked) as address:
        answer = await client.post(address, "/data", b"")
        assert (answer.status, bytes(answer.body)) == (500, b"hello world")
    async with raw_server(until_close) as address:
        assert bytes((await client.post(address, "/data", b"")).body) == b"until the end"
    async with raw_server(endless) as address:
        with pytest.raises(ProtocolError, match="without a length"):
            await asyncio.wait_for(client.post(address, "/data", b""), 10)


async def test_a_silent_server_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "SILENT_PEER", 0.5)

    async def silent(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def slow_but_alive(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"steady":  # a byte every 0.2 s: never silent for 0.5 s
            await asyncio.sleep(0.2)
            w.write(bytes([byte]))
            await w.drain()

    client = BulkClient({}, None)
    async with raw_server(silent) as address:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await client.post(address, "/data", b"")
        assert asyncio.get_running_loop().time() - started < 5
    async with raw_server(slow_but_alive) as address:
        answer = await client.post(address, "/data", b"")
        assert bytes(answer.body) == b"steady"


async def test_nobody_listening_is_an_os_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        await BulkClient({}, None).post(Address("tcp", "127.0.0.1", port), "/data", b"")


async def test_a_header_value_with_a_line_break_is_not_sent() -> None:
    async with app_server(echo_app()) as address:
        with pytest.raises(ProtocolError):
            await BulkClient({"X-Evil": "a\r\nInjected: yes"}, None).post(address, "/data", b"")


async def test_a_cancelled_post_closes_its_connection() -> None:
    connections: list[asyncio.StreamWriter] = []
    closed = asyncio.Event()

    async def hold(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        connections.append(w)
        await r.read()  # until the client goes
        closed.set()

    async with raw_server(hold) as address:
        task = asyncio.create_task(BulkClient({}, None).post(address, "/data", b""))
        while not connections:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5)


def counting_app() -> tuple[web.Application, set[int]]:
    """``POST /data`` answering ``ok``; the client ports it was asked from."""
    ports: set[int] = set()

    async def data(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.add(peer[1] if peer else -1)
        await request.read()
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_post("/data", data)
    return app, ports


async def test_a_connection_is_kept_for_the_next_request_and_closed_with_the_client() -> None:
    app, ports = counting_app()
    client = BulkClient({}, None)
    async with app_server(app) as address:
        for _ in range(5):
            assert bytes((await client.post(address, "/data", b"x")).body) == b"ok"
        assert client.connections_opened == 1 and len(ports) == 1
        # concurrent requests each take a connection; the idle ones are kept, up to a bound
        answers = await asyncio.gather(*(client.post(address, "/data", b"x")
                                         for _ in range(bulk.KEEP_IDLE + 3)))
        assert all(bytes(a.body) == b"ok" for a in answers)
        assert len(client._idle[address]) == bulk.KEEP_IDLE
        client.close()
        assert not client._idle
        await client.post(address, "/data", b"x")
        assert client.connections_opened == bulk.KEEP_IDLE + 3 + 1
        client.close()


async def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    served = 0

    async def once_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        await r.readexactly(1)  # the request's body
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()  # then the connection closes, as a server's keep-alive ends

    client = BulkClient({}, None)
    async with raw_server(once_then_close) as address:
        for _ in range(3):
            assert bytes((await client.post(address, "/data", b"x")).body) == b"ok"
            await asyncio.sleep(0.05)
    assert served == 3 and client.connections_opened == 3


async def test_an_answer_that_says_close_or_overruns_its_length_is_not_kept() -> None:
    async def closing(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readexactly(1)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await w.drain()
        await asyncio.sleep(1)

    async def overrun(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readexactly(1)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE")
        await w.drain()
        await asyncio.sleep(1)

    for answer in (closing, overrun):
        client = BulkClient({}, None)
        async with raw_server(answer) as address:
            assert bytes((await client.post(address, "/data", b"x")).body) == b"ok"
            assert not client._idle.get(address)
