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
it, so a connection carries one request (``Connection: close``): no pool, a connect per
call, which a transfer of megabytes does not notice. A body without a length (chunked, or
until close) goes through h11 and may be at most :data:`UNSIZED_LIMIT` bytes: memkube's data
answers always declare theirs, so such a body is a short error text.

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

from . import buffers
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
    """Posts to memkube servers with the pool's headers (its token) and TLS context."""

    def __init__(self, headers: Mapping[str, str], context: ssl.SSLContext | None) -> None:
        self.headers = dict(headers)
        self._context = context
        self._tls: ssl.SSLContext | None = None

    @classmethod
    def for_pool(cls, auth: Auth, tls: TLSConfig) -> BulkClient:
        """Presenting the pool's token, with its TLS settings (as :func:`memkube.serving.peer_session`)."""
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
        loop = asyncio.get_running_loop()
        conn, request = _request(address, path, body, self.headers)
        reader = _AnswerReader(loop, conn, request, None if patient else SILENT_PEER)
        context = self._tls_for(address)
        async with asyncio.timeout(connect_timeout):
            transport, _ = await loop.create_connection(
                lambda: reader, address.host, address.port, ssl=context,
                server_hostname=address.host if context else None)
        try:
            return await reader.done
        finally:
            # done: the server closes too; failed or cancelled: no lingering
            if reader.done.done() and not reader.done.cancelled() \
                    and reader.done.exception() is None:
                transport.close()
            else:
                transport.abort()


def _request(address: Address, path: str, body: bytes,
             headers: Mapping[str, str]) -> tuple[h11.Connection, bytes]:
    """The request's bytes, and the h11 connection that wrote them (it reads the answer)."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    conn = h11.Connection(h11.CLIENT)
    fields = [("Host", f"{host}:{address.port}"), ("Content-Length", str(len(body))),
              ("Connection", "close"), *headers.items()]
    try:
        out = conn.send(h11.Request(method="POST", target=path, headers=fields))
    except h11.LocalProtocolError as exc:  # e.g. a header value with a line break
        raise ProtocolError(f"cannot send this request: {exc}") from None
    return conn, b"".join([out or b"", conn.send(h11.Data(data=body)) or b"",
                           conn.send(h11.EndOfMessage()) or b""])


class _AnswerReader(asyncio.BufferedProtocol):
    """Reads one answer: the head through h11 into a small buffer, then a sized body
    straight into its own buffer; ``done`` gets the :class:`Answer` or the error."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: h11.Connection, request: bytes,
                 silent: float | None) -> None:
        self._loop = loop
        self._h11 = conn
        self._request = request
        self._silent = silent
        self._scratch = bytearray(HEAD_BUFFER)
        self._status = 0
        self._body: memoryview | None = None  # a sized body, once its head is read
        self._pos = 0
        self._direct = False  # the kernel writes the body: h11 has handed over
        self._into_body = False
        self._unsized: list[bytes] = []
        self._unsized_bytes = 0
        self._transport: asyncio.Transport | None = None
        self._last = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[Answer] = loop.create_future()

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)
        if self._silent is not None:
            self._timer = self._loop.call_later(self._silent, self._check_silence)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._direct and self._body is not None and self._pos < len(self._body):
            self._into_body = True
            return self._body[self._pos:]
        self._into_body = False
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        self._last = time.monotonic()
        if self.done.done():
            return
        if self._into_body:
            self._pos += nbytes
            if self._body is not None and self._pos == len(self._body):
                self._finish()  # what follows the declared length is not read: we close
            return
        self._feed(bytes(self._scratch[:nbytes]))

    def eof_received(self) -> bool:
        if not self.done.done():
            if self._direct:
                self._fail(ProtocolError("body shorter than its Content-Length"))
            else:
                self._feed(b"")  # an answer that ends with the connection ends here
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.done.done():
            self._fail(exc or ConnectionResetError("connection closed before the answer"))

    # -- the answer

    def _feed(self, data: bytes) -> None:
        try:
            self._h11.receive_data(data)
            while not self.done.done():
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
            length = dict(event.headers).get(b"content-length")
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
        # a sized body is whole here, except where the status allows none (h11 knows)
        body = (self._body[:self._pos] if self._body is not None
                else memoryview(b"".join(self._unsized)))
        self.done.set_result(Answer(self._status, body))
        self._close()

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()

    def _check_silence(self) -> None:
        if self.done.done() or self._silent is None:
            return
        quiet = time.monotonic() - self._last
        if quiet >= self._silent:
            self._fail(TimeoutError(f"no byte for {self._silent:.0f} s"))
        else:
            self._timer = self._loop.call_later(self._silent - quiet, self._check_silence)
