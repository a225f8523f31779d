"""Raw HTTP/1.1 over asyncio streams, for requests no well-behaved client library would send.

Hostile tests need bytes on the wire exactly as written: non-ASCII header values, newlines
in a path, a Content-Length that lies, headers that trickle in. ``request`` sends one request
with ``Connection: close`` and reads the whole answer; ``open_silent`` and ``trickle`` hold
connections open the way an attacker would.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _split_url(base: str) -> tuple[str, int]:
    host_port = base.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


def build(method: str, path: bytes | str, headers: dict[str, bytes | str] | None = None,
          body: bytes = b"", *, host: str = "127.0.0.1", content_length: bool = True) -> bytes:
    """The bytes of one request; header values may be any bytes (latin-1 for str)."""
    def raw(v: bytes | str) -> bytes:
        return v if isinstance(v, bytes) else v.encode("utf-8")

    lines = [raw(method) + b" " + raw(path) + b" HTTP/1.1", b"Host: " + host.encode(),
             b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(raw(name) + b": " + raw(value))
    if content_length and body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def read_response(reader: asyncio.StreamReader, timeout: float = 10) -> RawResponse:
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()  # Connection: close -> read to the end
    return RawResponse(status, headers, body)


async def send(base: str, data: bytes, timeout: float = 10, *,
               half_close: bool = False) -> RawResponse:
    """Send ``data`` as it is to the server at ``base`` (http://host:port) and read the answer.

    ``half_close``: end our side after sending, so a body shorter than its Content-Length
    ends at once instead of waiting for the server's deadline.
    """
    host, port = _split_url(base)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            if half_close:
                writer.write_eof()
        return await read_response(reader, timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def request(base: str, method: str, path: bytes | str,
                  headers: dict[str, bytes | str] | None = None, body: bytes = b"",
                  timeout: float = 10) -> RawResponse:
    return await send(base, build(method, path, headers, body), timeout)


async def is_closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server closes (EOF or reset) within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def open_silent(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that never sends a byte."""
    host, port = _split_url(base)
    return await asyncio.open_connection(host, port)


def blocking(method: str, url: str, headers: dict[str, str] | None = None,
             data: bytes | None = None, timeout: float = 10) -> tuple[int, str]:
    """One request on a fresh connection from synchronous code: (status, body text)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with direct.open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
