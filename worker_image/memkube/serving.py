"""The HTTP plumbing the scheduler and workers share: a guarded server and a peer session.

``start_server`` serves an aiohttp app behind a :class:`ConnectionGuard`, so that nobody can
hold the server's connections or file descriptors hostage:

- a connection must complete a request's headers within ``header_timeout`` of connecting
  (or of its previous response, until it has proven itself with a credential): silent and
  trickling connections are closed, whatever they send meanwhile;
- a request whose body is still owed gets no byte for ``body_timeout``: closed;
- a proven connection may idle ``idle_timeout`` between requests (aiohttp's own keep-alive
  default is an hour);
- at most ``max_untrusted`` connections that have not presented an accepted credential
  (``request[GRANT_KEY]``): a new one makes the oldest go, so a flood cannot keep probes and
  real clients from connecting; at most ``max_connections`` in all, clamped below the
  process's open-file limit (raised from soft to hard at start) so ``accept`` never meets
  EMFILE because of us;
- a TLS handshake must finish within ``header_timeout``;
- repeated log records (``asyncio``'s accept errors, rejected requests) are rate-limited.

Not covered: routes and auth (each server adds its own; see :mod:`memkube.security`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from . import buffers
from .security import GRANT_KEY, Auth, TLSConfig

log = logging.getLogger(__name__)

_TRUSTED_GRANTS = frozenset({"token", "metrics", "session"})
_BACKLOG = 128


@dataclass(frozen=True)
class HTTPLimits:
    """How long and how many connections a memkube HTTP server tolerates."""

    header_timeout: float = 10.0
    """Seconds from connecting (or from the previous response, for an unproven connection)
    to a request's complete headers; also the TLS handshake's limit."""
    body_timeout: float = 30.0
    """Seconds without a byte while a request body is still owed."""
    idle_timeout: float = 120.0
    """Seconds a proven connection may wait between requests."""
    lingering_time: float = 2.0
    """Seconds an unread body is drained (not buffered) after a response, then closed."""
    max_connections: int = 4096
    """Connections at most (clamped below the open-file limit)."""
    max_untrusted: int = 1024
    """Connections without an accepted credential at most; the oldest go first."""

    def clamped(self, open_files: int) -> HTTPLimits:
        """These limits within a process allowed ``open_files`` descriptors."""
        # Room for spill files, peer sessions, pipes and the loop, and for one burst of
        # accepts (asyncio accepts up to the backlog at once, before any eviction runs).
        reserve = max(64, open_files // 4) + _BACKLOG
        total = max(8, min(self.max_connections, open_files - reserve))
        return HTTPLimits(self.header_timeout, self.body_timeout, self.idle_timeout,
                          self.lingering_time, total,
                          max(4, min(self.max_untrusted, total // 2)))


class _Conn:
    __slots__ = ("last_data", "request", "since", "transport", "trusted")

    def __init__(self, transport: asyncio.BaseTransport, now: float) -> None:
        self.transport = transport
        self.since = now  # connected, or the end of the previous request
        self.last_data = now
        self.request: web.BaseRequest | None = None
        self.trusted = False

    def is_trusted(self) -> bool:
        if not self.trusted and self.request is not None \
                and self.request.get(GRANT_KEY) in _TRUSTED_GRANTS:
            self.trusted = True
        return self.trusted


class ConnectionGuard:
    """The live connections of one server and the rules above; ``stats`` counts closures."""

    def __init__(self, limits: HTTPLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._conns: dict[asyncio.BaseTransport, _Conn] = {}
        self._untrusted: OrderedDict[asyncio.BaseTransport, _Conn] = OrderedDict()
        self.stats = {"header-timeout": 0, "body-timeout": 0, "idle": 0, "evicted": 0,
                      "refused": 0}

    def __len__(self) -> int:
        return len(self._conns)

    # --- the protocol's events

    def opened(self, transport: asyncio.BaseTransport) -> _Conn:
        conn = _Conn(transport, self._clock())
        self._conns[transport] = conn
        self._untrusted[transport] = conn
        limits = self.limits
        while len(self._untrusted) > limits.max_untrusted \
                or len(self._conns) > limits.max_connections:
            victim = self._oldest_untrusted()
            if victim is None or victim is conn:
                break
            self._close(victim, "evicted")
        if len(self._conns) > limits.max_connections or len(self._untrusted) > \
                limits.max_untrusted:
            self._close(conn, "refused")  # nothing older to make room: the newcomer goes
        return conn

    def closed(self, conn: _Conn) -> None:
        self._conns.pop(conn.transport, None)
        self._untrusted.pop(conn.transport, None)

    def _oldest_untrusted(self) -> _Conn | None:
        while self._untrusted:
            transport, conn = next(iter(self._untrusted.items()))
            if not conn.is_trusted():
                return conn
            del self._untrusted[transport]  # proved itself since: not a candidate
        return None

    def _close(self, conn: _Conn, why: str) -> None:
        self.stats[why] += 1
        self.closed(conn)
        log.debug("closing connection from %r: %s", conn.transport.get_extra_info("peername"),
                  why)
        conn.transport.abort()  # type: ignore[attr-defined]

    # --- requests (the middleware)

    def middleware(self) -> Any:
        @web.middleware
        async def track(request: web.Request, handler: Any) -> web.StreamResponse:
            conn = self._conns.get(request.transport) if request.transport else None
            if conn is None:
                return await handler(request)  # type: ignore[no-any-return]
            conn.request = request
            try:
                return await handler(request)  # type: ignore[no-any-return]
            finally:
                if conn.is_trusted():
                    self._untrusted.pop(conn.transport, None)
                conn.request = None
                conn.since = self._clock()

        return track

    # --- deadlines

    def sweep(self) -> None:
        now = self._clock()
        limits = self.limits
        for conn in list(self._conns.values()):
            request = conn.request
            if request is None:
                idle = limits.idle_timeout if conn.is_trusted() else limits.header_timeout
                if now - conn.since > idle:
                    self._close(conn, "idle" if conn.trusted else "header-timeout")
            elif not request.content.is_eof() and now - conn.last_data > limits.body_timeout:
                self._close(conn, "body-timeout")

    async def run(self) -> None:
        limits = self.limits
        interval = min(1.0, max(0.05, min(limits.header_timeout, limits.body_timeout) / 4))
        while True:
            await asyncio.sleep(interval)
            self.sweep()


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard watching its events."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)
        self._conn = self._guard.opened(transport)

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._conn.last_data = self._guard._clock()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard.closed(self._conn)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _GuardedSite(web.BaseSite):
    def __init__(self, runner: web.AppRunner, host: str, port: int,
                 ssl_context: Any, guard: ConnectionGuard) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=_BACKLOG)
        self._host, self._port, self._guard = host, port, guard
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        guard = self._guard
        self._server = await loop.create_server(
            lambda: _GuardedProtocol(server(), guard), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog,
            ssl_handshake_timeout=guard.limits.header_timeout if self._ssl_context else None)
        if self._server.sockets:
            self._port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(guard.run(), name="memkube-connection-guard")

    @property
    def port(self) -> int:
        return self._port

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await super().stop()


CONNECTIONS = web.AppKey("memkube.connections", ConnectionGuard)
"""The app key under which ``start_server`` leaves the server's :class:`ConnectionGuard`."""


async def start_server(app: web.Application, host: str, port: int, tls: TLSConfig,
                       limits: HTTPLimits | None = None) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port) behind a connection guard; returns
    the runner and the port. ``app`` must not have started yet.

    Websocket handlers get a short shutdown grace: peers are told to close first.
    """
    open_files = raise_open_file_limit()
    install_log_limits()
    guard = ConnectionGuard((limits or HTTPLimits()).clamped(open_files))
    app[CONNECTIONS] = guard
    app.middlewares.insert(0, guard.middleware())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0,
                           lingering_time=guard.limits.lingering_time)
    await runner.setup()
    assert runner.server is not None
    _refuse_unknown_expect(runner.server)
    site = _GuardedSite(runner, host, port, tls.server_context(), guard)
    await site.start()
    return runner, site.port


def _refuse_unknown_expect(server: web.Server) -> None:
    """Answer an ``Expect`` other than ``100-continue`` with 417 before aiohttp sees it: its
    default handler echoes the header and fails with a 500 on one it cannot encode."""
    inner = server.request_handler

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get("Expect")
        if expect is not None and expect.strip().lower() != "100-continue":
            response = web.Response(status=417, text="memkube: unknown Expect\n")
            response.force_close()
            return response
        return await inner(request)

    server.request_handler = handle


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to the hard one; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("could not raise the open-file limit to %d: %s", target, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class RateLimitFilter(logging.Filter):
    """Lets ``burst`` records of one kind (logger and first line of the message template)
    through per ``interval`` seconds; the next one let through says how many were dropped."""

    def __init__(self, burst: int = 5, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_kinds: int = 1000) -> None:
        super().__init__()
        self.burst, self.interval, self._clock, self._max_kinds = burst, interval, clock, \
            max_kinds
        self._windows: dict[tuple[str, str], list[float]] = {}  # [start, passed, dropped]

    def reset(self) -> None:
        self._windows.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg).split("\n", 1)[0][:200])
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            dropped = int(window[2]) if window else 0
            if len(self._windows) >= self._max_kinds:
                self._windows.clear()
            self._windows[key] = [now, 1, 0]
            if dropped:
                record.msg = (f"{record.msg} ({dropped} similar messages suppressed in the "
                              f"last {self.interval:.0f} s)")
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False


LOG_LIMITS = RateLimitFilter()
"""The filter ``start_server`` puts on loggers that an attacker can make repeat themselves."""
_LIMITED_LOGGERS = ("asyncio", "aiohttp.server", "memkube.security.rejected")


def install_log_limits() -> None:
    for name in _LIMITED_LOGGERS:
        logger = logging.getLogger(name)
        if LOG_LIMITS not in logger.filters:
            logger.addFilter(LOG_LIMITS)


def peer_session(auth: Auth, tls: TLSConfig, *, limit: int = 100) -> aiohttp.ClientSession:
    """A session presenting the pool's token, for calls to the scheduler and other workers."""
    return aiohttp.ClientSession(
        headers=auth.headers(),
        connector=aiohttp.TCPConnector(ssl=tls.client_context() or False, limit=limit),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )


#: Bytes a bulk body may have buffered before its connection stops reading: aiohttp's
#: default (64 KiB, pausing at 128 KiB) pauses and resumes the socket every few hundred
#: kilobytes, which halves a loopback upload's throughput.
BULK_BUFFER = 4 << 20


def widen_buffer(stream: Any, nbytes: int = BULK_BUFFER) -> None:
    """Let an accepted bulk body (authenticated, size checked) buffer ``nbytes`` before its
    connection pauses; aiohttp has no public knob per request, so its stream's water marks
    are raised where they exist (a changed aiohttp just keeps its default)."""
    if hasattr(stream, "_low_water") and hasattr(stream, "_high_water"):
        stream._low_water = max(stream._low_water, nbytes)
        stream._high_water = max(stream._high_water, 2 * nbytes)


async def read_exactly(stream: aiohttp.StreamReader, length: int) -> memoryview:
    """``length`` bytes of a body (its Content-Length, checked by the caller) read into one
    buffer of that size (returned as a memoryview) as they arrive: no growing buffer, no
    joining of chunks (aiohttp's ``read()`` does both, at half the loopback speed).
    ValueError when the body is shorter or longer. The connection may buffer
    :data:`BULK_BUFFER` meanwhile. (Answers a memkube peer reads: :mod:`memkube.bulk`.)"""
    widen_buffer(stream)
    view = memoryview(buffers.fresh(length))
    pos = 0
    while pos < length:
        chunk = await stream.readany()
        if not chunk:
            raise ValueError("body shorter than its Content-Length")
        if pos + len(chunk) > length:
            raise ValueError("body longer than its Content-Length")
        view[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    return view


async def read_body(request: web.Request, length: int) -> memoryview:
    """A request's body of ``length`` bytes: :func:`read_exactly`."""
    return await read_exactly(request.content, length)


async def stream_buffers(buffers: Sequence[Any]) -> AsyncIterator[Any]:
    """A request body written buffer by buffer (send it with an explicit Content-Length):
    the buffers, memoryviews of values' frames, are not joined into one copy."""
    for buf in buffers:
        yield buf


async def read_limited(request: web.Request, limit: int) -> bytes | memoryview:
    """The body, into one buffer of its Content-Length when it declares one (at most
    ``limit``: 413 beyond), else as aiohttp reads it (its ``client_max_size`` applies)."""
    length = request.content_length
    if length is None:
        return await request.read()
    if length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    try:
        return await read_body(request, length)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
