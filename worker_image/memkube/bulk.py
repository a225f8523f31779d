"""Data answers read straight into their own memory: ``POST`` a small request, get the
answer's body in one buffer of its Content-Length, written there by the kernel.

aiohttp reads a response in 256 KiB ``bytes`` objects that the caller then copies into
its destination: every byte is copied twice and lands in freshly allocated memory each
time. Here the socket is read with ``recv_into`` (an asyncio ``BufferedProtocol``) into
the answer's buffer itself (:func:`memkube.buffers.fresh`: huge pages where offered), so
each byte is copied once. A 96 MiB body over loopback took 66 ms this way against 155 ms
read through a stream (``bench/FINDINGS.md`` F13).

The HTTP is h11's: it writes the request and parses the answer's status line and headers,
and its limit on the size of a head applies. The body of a declared Content-Length bypasses
it and ends exactly at the next answer's boundary, so the connection is kept for the next
request to the same server (a fresh h11 state per exchange): at most :data:`KEEP_IDLE` idle
per address, for :data:`IDLE_FOR` seconds (well within the servers' keep-alive). A kept
connection the server closed meanwhile is replaced once, when nothing of the answer came.
A body without a length (chunked, or until close) goes through h11, ends its connection,
and may be at most :data:`UNSIZED_LIMIT` bytes: memkube's data answers always declare
theirs, so such a body is a short error text.

Errors: ``OSError`` for the connection, ``TimeoutError`` for a connect beyond its limit or
:data:`SILENT_PEER` seconds without a byte, :class:`ProtocolError` for an
answer that is not HTTP or whose body does not match its length.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import h11
import msgpack

from . import buffers, serialize
from .addresses import Address
from .errors import ProtocolError
from .security import Auth, TLSConfig

#: Seconds without a byte from a peer after which a data transfer gives up on it: a peer
#: whose pod vanished answers nothing (no reset comes from a removed network namespace).
SILENT_PEER = 60.0
#: Bytes read at a time while the answer's head is parsed.
HEAD_BUFFER = 64 * 1024
#: Most bytes taken of a body that declares no length.
UNSIZED_LIMIT = 1 << 20
#: Idle connections kept per address, and the seconds one is kept.
KEEP_IDLE = 4
IDLE_FOR = 30.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: memoryview


def client_context(context: ssl.SSLContext | None) -> ssl.SSLContext:
    """The TLS context for a ``tls://`` address: the pool's, or without one (no CA given)
    an unverifying one, as the peers' aiohttp sessions use (``ssl=False``): the token is
    what authenticates there."""
    if context is not None:
        return context
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    return unverified


class BulkClient:
    """Posts to memkube servers with the pool's headers (its token) and TLS context,
    keeping connections for the next request. Used on one event loop; :meth:`close` it."""

    def __init__(self, headers: Mapping[str, str], context: ssl.SSLContext | None) -> None:
        self.headers = dict(headers)
        self._context = context
        self._tls: ssl.SSLContext | None = None
        self._idle: dict[Address, list[tuple[float, _Link]]] = {}
        self.connections_opened = 0  # a figure (tests: connections are kept)

    @classmethod
    def for_pool(cls, auth: Auth, tls: TLSConfig) -> BulkClient:
        """Presenting the pool's token, with its TLS settings (as
        :func:`memkube.serving.peer_session`)."""
        return cls(auth.headers(), tls.client_context())

    def _tls_for(self, address: Address) -> ssl.SSLContext | None:
        if address.scheme != "tls":
            return None
        if self._tls is None:
            self._tls = client_context(self._context)
        return self._tls

    async def post(self, address: Address, path: str, body: bytes, *,
                   connect_timeout: float = 10.0, patient: bool = False) -> Answer:
        """The answer to ``POST path`` with ``body`` at ``address``; given up on after
        :data:`SILENT_PEER` seconds without a byte, unless ``patient`` (a server that
        answers once it has waited for something)."""
        silent = None if patient else SILENT_PEER
        while True:
            conn, request = _request(address, path, body, self.headers)
            link = self._take(address)
            kept = link is not None
            if link is None:
                link = await self._open(address, connect_timeout)
            try:
                answer = await link.exchange(conn, request, silent)
            except (OSError, ProtocolError) as exc:
                link.abort()
                if kept and not link.answered and not isinstance(exc, TimeoutError):
                    continue  # the server let a kept connection go meanwhile: a new one
                raise
            except BaseException:  # cancelled: the connection is in an unknown state
                link.abort()
                raise
            if link.reusable:
                self._give(address, link)
            else:
                link.close()
            return answer

    async def _open(self, address: Address, connect_timeout: float) -> _Link:
        loop = asyncio.get_running_loop()
        context = self._tls_for(address)
        async with asyncio.timeout(connect_timeout):
            _, link = await loop.create_connection(
                lambda: _Link(loop), address.host, address.port, ssl=context,
                server_hostname=address.host if context else None)
        self.connections_opened += 1
        return link

    def _take(self, address: Address) -> _Link | None:
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle:
            since, link = idle.pop()
            if link.alive and now - since < IDLE_FOR:
                return link
            link.close()
        return None

    def _give(self, address: Address, link: _Link) -> None:
        idle = self._idle.setdefault(address, [])
        idle.append((time.monotonic(), link))
        while len(idle) > KEEP_IDLE:
            idle.pop(0)[1].close()

    def close(self) -> None:
        """Close the kept connections."""
        for idle in self._idle.values():
            for _, link in idle:
                link.close()
        self._idle.clear()


async def fetch_bundle(bulk: BulkClient, address: Address, keys: list[str], *,
                       connect_timeout: float = 10.0
                       ) -> tuple[dict[str, list[memoryview]], list[str], dict[str, str], int]:
    """``POST /data`` of ``keys`` at a worker: the answer's frames by key, the keys it lacks, the keys it could not
    serialize, and the answer's size. An answer other than 200 raises ProtocolError, as an
    answer that is not a bundle does; a connection that fails raises OSError."""
    answer = await bulk.post(address, "/data", msgpack.packb({"keys": keys}),
                             connect_timeout=connect_timeout)
    if answer.status != 200:
        raise ProtocolError(f"{address} answered {answer.status}")
    items, missing, errors = serialize.unpack_bundle(answer.body)
    return items, missing, errors, len(answer.body)


def _request(address: Address, path: str, body: bytes,
             headers: Mapping[str, str]) -> tuple[h11.Connection, bytes]:
    """The request's bytes, and the h11 connection that wrote them (it reads the answer)."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    conn = h11.Connection(h11.CLIENT)
    fields = [("Host", f"{host}:{address.port}"), ("Content-Length", str(len(body))),
              *headers.items()]
    try:
        out = conn.send(h11.Request(method="POST", target=path, headers=fields))
    except h11.LocalProtocolError as exc:  # e.g. a header value with a line break
        raise ProtocolError(f"cannot send this request: {exc}") from None
    return conn, b"".join([out or b"", conn.send(h11.Data(data=body)) or b"",
                           conn.send(h11.EndOfMessage()) or b""])


class _Link(asyncio.BufferedProtocol):
    """One connection, carrying one exchange at a time: the answer's head through h11
    into a small buffer, then a sized body straight into its own buffer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._scratch = bytearray(HEAD_BUFFER)
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[Answer] | None = None  # the exchange under way
        self._timer: asyncio.TimerHandle | None = None
        self.alive = True
        self._reset(h11.Connection(h11.CLIENT), None)

    def _reset(self, conn: h11.Connection, silent: float | None) -> None:
        """The state of one exchange."""
        self._h11 = conn
        self._silent = silent
        self._status = 0
        self._body: memoryview | None = None  # a sized body, once its head is read
        self._pos = 0
        self._direct = False  # the kernel writes the body: h11 has handed over
        self._into_body = False
        self._unsized: list[bytes] = []
        self._unsized_bytes = 0
        self._keep = False  # the answer lets the connection carry another request
        self.reusable = False
        self.answered = False  # a byte of this exchange's answer came
        self._last = time.monotonic()

    def exchange(self, conn: h11.Connection, request: bytes,
                 silent: float | None) -> asyncio.Future[Answer]:
        """Send ``request`` (written by ``conn``) and read its answer."""
        assert self._transport is not None and self._done is None
        self._reset(conn, silent)
        self._done = done = self._loop.create_future()
        if not self.alive:
            done.set_exception(ConnectionResetError("the connection was closed"))
            return done
        self._transport.write(request)
        if silent is not None:
            self._timer = self._loop.call_later(silent, self._check_silence)
        return done

    def close(self) -> None:
        self.alive = False
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.alive = False
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._direct and self._body is not None and self._pos < len(self._body):
            self._into_body = True
            return self._body[self._pos:]
        self._into_body = False
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        self._last = time.monotonic()
        if self._done is None or self._done.done():
            self.abort()  # bytes nobody asked for: this connection cannot be trusted
            return
        self.answered = True
        if self._into_body:
            self._pos += nbytes
            if self._body is not None and self._pos == len(self._body):
                self._finish()
            return
        self._feed(bytes(self._scratch[:nbytes]))

    def eof_received(self) -> bool:
        self.alive = False
        if self._done is not None and not self._done.done():
            if self._direct:
                self._fail(ProtocolError("body shorter than its Content-Length"))
            else:
                self._feed(b"")  # an answer that ends with the connection ends here
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self._timer is not None:
            self._timer.cancel()
        if self._done is not None and not self._done.done():
            self._fail(exc or ConnectionResetError("connection closed before the answer"))

    # -- the answer

    def _feed(self, data: bytes) -> None:
        done = self._done
        assert done is not None
        try:
            self._h11.receive_data(data)
            while self._done is done and not done.done():
                event = self._h11.next_event()
                if event is h11.NEED_DATA:
                    if self._body is not None:
                        self._direct = True  # the rest of the body, straight in
                    return
                self._on(event)
        except h11.RemoteProtocolError as exc:
            self._fail(ProtocolError(f"not an HTTP answer: {exc}"))
        except (OSError, OverflowError, MemoryError) as exc:  # a length beyond any memory
            self._fail(ProtocolError(f"cannot hold the answer's body: {exc}"))

    def _on(self, event: object) -> None:
        if isinstance(event, h11.InformationalResponse):
            return
        if isinstance(event, h11.Response):
            self._status = event.status_code
            headers = dict(event.headers)
            length = headers.get(b"content-length")
            self._keep = (length is not None and event.http_version == b"1.1"
                          and b"close" not in headers.get(b"connection", b"").lower())
            if length is not None:  # h11 has checked that it is a number
                self._body = memoryview(buffers.fresh(int(length)))
                if not self._body:
                    self._finish()
        elif isinstance(event, h11.Data):
            if self._body is not None:
                self._body[self._pos:self._pos + len(event.data)] = event.data
                self._pos += len(event.data)
            else:
                self._unsized_bytes += len(event.data)
                if self._unsized_bytes > UNSIZED_LIMIT:
                    self._fail(ProtocolError(
                        f"an answer without a length longer than {UNSIZED_LIMIT} bytes"))
                    return
                self._unsized.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            self._finish()

    def _finish(self) -> None:
        assert self._done is not None
        if self._timer is not None:
            self._timer.cancel()
        # a sized body is whole here, except where the status allows none (h11 knows)
        body = (self._body[:self._pos] if self._body is not None
                else memoryview(b"".join(self._unsized)))
        # reusable only if nothing follows the answer (h11 holds what came with its head)
        self.reusable = (self._keep and self.alive and not self._h11.trailing_data[0]
                         and (self._body is None or self._pos == len(self._body)))
        done, self._done = self._done, None
        done.set_result(Answer(self._status, body))

    def _fail(self, exc: BaseException) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self._done = None
        self.abort()

    def _check_silence(self) -> None:
        if self._done is None or self._done.done() or self._silent is None:
            return
        quiet = time.monotonic() - self._last
        if quiet >= self._silent:
            self._fail(TimeoutError(f"no byte for {self._silent:.0f} s"))
        else:
            self._timer = self._loop.call_later(self._silent - quiet, self._check_silence)
