"""Receiving a client's direct scatter: ``PUT /scatter/{grant}`` (see ``scheduler/scatter.py``).

The scheduler tells this worker what to expect (``expect-data``: a grant id, the client,
each key's size in bytes); the client then sends a bundle of some or all of those keys. A
request is refused before its body is read when its grant is unknown (403, after waiting a
moment for the scheduler's message, which may arrive after the client's request), it has no
``Content-Length`` (411) or declares more bytes than its keys' sizes allow (413); and after
reading when the bundle is malformed (400) or names a key the grant does not give this
worker, one already received, or a size other than the one declared (403). Nothing of a
refused request is stored. What is stored is reported to the scheduler
(``scattered-data``), which records it only where it placed it.

The body is read into one buffer of the declared length; the values' frames are views of it
(no second copy). The pool's token is needed like on every other route (the middleware).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from .. import serialize
from ..errors import ProtocolError
from ..protocol import Message
from ..serving import read_body
from .routes import store_values

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger(__name__)

#: Bytes a request may carry beyond its keys' declared sizes (the bundle's header).
HEADER_ALLOWANCE = 64 * 1024
#: Seconds a request waits for its grant's ``expect-data`` to arrive from the scheduler.
GRANT_WAIT = 10.0


@dataclass
class Expected:
    grant: str
    client: str
    keys: dict[str, int]  # key -> bytes of its frames, still to receive
    expires: float
    busy: set[str] = field(default_factory=set)  # keys of a request being read


class ScatterInbox:
    """The grants this worker was told to expect, by id."""

    def __init__(self) -> None:
        self.expected: dict[str, Expected] = {}
        self._arrived = asyncio.Event()
        self.received_bytes = 0  # value bytes received straight from clients (a figure)
        self.refused = 0  # requests refused (a figure)

    def expect(self, msg: Message) -> None:
        now = time.monotonic()
        for gid in [g for g, e in self.expected.items() if e.expires < now]:
            del self.expected[gid]
        ttl = float(msg.get("ttl", 120.0))
        entry = self.expected.setdefault(
            msg["grant"], Expected(msg["grant"], msg["client"], {}, now + ttl))
        entry.keys.update(msg["keys"])
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def wait_for(self, grant: str, timeout: float | None = None) -> Expected | None:
        deadline = time.monotonic() + (GRANT_WAIT if timeout is None else timeout)
        while True:
            entry = self.expected.get(grant)
            if entry is not None and entry.expires >= time.monotonic():
                return entry
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return None


def scatter_routes(worker: Worker) -> list[web.RouteDef]:
    inbox = worker.scatter_inbox

    def refuse(request: web.Request, status: int, text: str) -> web.Response:
        inbox.refused += 1
        log.warning("refused a direct scatter from %s: %s", request.remote, text)
        response = web.Response(status=status, text=text + "\n")
        if request.body_exists and not request.content.is_eof():
            response.force_close()  # its body is not drained for a refused peer
        return response

    async def put(request: web.Request) -> web.Response:
        entry = await inbox.wait_for(request.match_info["grant"])
        if entry is None:
            return refuse(request, 403, "no such scatter grant here (expired, or not given "
                                        "by the scheduler)")
        length = request.content_length
        if length is None:
            return refuse(request, 411, "a direct scatter needs a Content-Length")
        allowed = sum(n for k, n in entry.keys.items() if k not in entry.busy)
        if length > allowed + HEADER_ALLOWANCE:
            return refuse(request, 413, f"body of {length} bytes exceeds what the grant "
                                        f"allows ({allowed} bytes of values)")
        try:
            buffer = await read_body(request, length)
        except ValueError as exc:
            return refuse(request, 400, str(exc))
        try:
            items, _, _ = serialize.unpack_bundle(buffer)
        except ProtocolError as exc:
            return refuse(request, 400, f"malformed bundle: {exc}")
        for key, frames in items.items():
            declared = entry.keys.get(key)
            if declared is None or key in entry.busy:
                return refuse(request, 403, f"key {key[:80]!r} is not granted here (or "
                                            "was received already)")
            if serialize.nbytes(frames) != declared:
                return refuse(request, 403, f"key {key[:80]!r} is not the size granted")
        entry.busy.update(items)
        try:
            loop = asyncio.get_running_loop()
            stored = await loop.run_in_executor(worker.io_executor, store_values, worker, items)
        finally:
            entry.busy.difference_update(items)
        for key in stored:
            entry.keys.pop(key, None)
        if not entry.keys:
            inbox.expected.pop(entry.grant, None)
        inbox.received_bytes += length
        worker.send_to_scheduler({
            "op": "scattered-data", "grant": entry.grant,
            "keys": {k: v["nbytes"] for k, v in stored.items()},
            "types": {k: v["type"] for k, v in stored.items()}})
        return web.json_response(stored)

    return [web.put("/scatter/{grant}", put)]
