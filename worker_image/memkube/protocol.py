"""Control messages between clients, the scheduler and workers.

Every websocket frame is one msgpack-encoded *list* of operations, each a map with an
``"op"`` string, so that thousands of small events travel in a handful of frames
(:class:`BatchedSend` collects them for a few milliseconds). Values (task functions,
arguments, results) are never control messages: they travel as opaque pickled ``bytes``
fields or over HTTP as frames (:mod:`memkube.serialize`).

Anything malformed — not msgpack, not a list of maps, an unknown op, a field of the wrong
type, a frame over the size limit — raises :class:`~memkube.errors.ProtocolError`; the
receiving server closes that one connection with the reason and keeps serving the others.

Not covered: what each side does with an op (the state machines).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import msgpack

from .errors import ProtocolError

log = logging.getLogger(__name__)

Message = dict[str, Any]

#: Largest control frame accepted (bytes). Task specs with big embedded arguments fit;
#: bulk data goes over HTTP instead.
MAX_FRAME = 256 * 1024 * 1024

_STR, _INT, _NUM, _BYTES, _BOOL = "str", "int", "num", "bytes", "bool"
_LIST, _MAP, _ANY, _OPT_STR, _OPT_NUM = "list", "map", "any", "str?", "num?"

#: The fields each op must carry, by sender. Extra fields are ignored (forward compatible).
SCHEMAS: dict[str, dict[str, str]] = {
    # client -> scheduler
    "register-client": {"client": _STR},
    "update-graph": {"tasks": _LIST, "wants": _LIST},
    "release-keys": {"keys": _LIST},
    "cancel-keys": {"keys": _LIST},
    "persist-keys": {"keys": _LIST},
    "replicate": {"keys": _LIST, "n": _INT},
    "who-has": {"keys": _LIST, "id": _INT},
    "info": {"id": _INT},
    "retire": {"id": _INT, "names": _LIST, "n": _INT},
    "scattered": {"keys": _MAP},
    "heartbeat-client": {},
    # worker -> scheduler
    "register-worker": {"address": _STR, "name": _STR, "nthreads": _INT, "host": _STR,
                        "node": _STR, "pid": _INT, "keys": _MAP, "memory": _MAP},
    "task-finished": {"key": _STR, "nbytes": _INT, "type": _STR},
    "task-erred": {"key": _STR, "exception": _BYTES, "traceback": _STR, "text": _STR},
    "add-keys": {"keys": _MAP},
    "missing-data": {"key": _STR, "dep": _STR, "worker": _STR},
    "lost-keys": {"keys": _LIST},
    "heartbeat-worker": {"memory": _MAP, "executing": _INT, "ready": _INT},
    "worker-status": {"status": _STR},
    "memory-restart": {"reason": _STR},
    "reschedule": {"key": _STR},
    "cannot-fit": {"key": _STR, "peak": _INT, "limit": _INT},
    # scheduler -> worker
    "compute-task": {"key": _STR, "run_spec": _BYTES, "who_has": _MAP, "priority": _LIST},
    "free-keys": {"keys": _LIST},
    "acquire-replicas": {"who_has": _MAP},
    "cancel-compute": {"key": _STR},
    "close-worker": {"reason": _STR},
    # scheduler -> client
    "welcome": {"client": _STR, "address": _STR},
    "key-in-memory": {"key": _STR, "type": _STR},
    "task-erred-client": {"key": _STR, "exception": _BYTES, "traceback": _STR, "text": _STR},
    "key-cancelled": {"key": _STR, "reason": _STR},
    "reply": {"id": _INT, "result": _ANY},
    "error": {"message": _STR},
}

_CHECKS: dict[str, Callable[[Any], bool]] = {
    _STR: lambda v: isinstance(v, str),
    _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    _NUM: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    _BYTES: lambda v: isinstance(v, (bytes, bytearray)),
    _BOOL: lambda v: isinstance(v, bool),
    _LIST: lambda v: isinstance(v, list),
    _MAP: lambda v: isinstance(v, dict),
    _ANY: lambda v: True,
    _OPT_STR: lambda v: v is None or isinstance(v, str),
    _OPT_NUM: lambda v: v is None or isinstance(v, (int, float)),
}


def validate(msg: Any, allowed: frozenset[str] | None = None) -> Message:
    """Check one operation against :data:`SCHEMAS`; raise ProtocolError if it does not fit."""
    if not isinstance(msg, dict):
        raise ProtocolError(f"operation is a {type(msg).__name__}, not a map")
    op = msg.get("op")
    if not isinstance(op, str):
        raise ProtocolError("operation has no string 'op'")
    schema = SCHEMAS.get(op)
    if schema is None or (allowed is not None and op not in allowed):
        raise ProtocolError(f"unknown or forbidden operation {op[:64]!r}")
    for field, kind in schema.items():
        if field not in msg:
            raise ProtocolError(f"{op}: missing field {field!r}")
        if not _CHECKS[kind](msg[field]):
            raise ProtocolError(f"{op}: field {field!r} must be {kind}")
    return msg


def encode(messages: list[Message]) -> bytes:
    return msgpack.packb(messages, use_bin_type=True)  # type: ignore[no-any-return]


def decode(frame: bytes | str, allowed: frozenset[str] | None = None) -> list[Message]:
    """Decode and validate one websocket frame."""
    if isinstance(frame, str):
        raise ProtocolError("text frames are not accepted")
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME}")
    try:
        ops = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_bin_len=MAX_FRAME)
    except Exception as exc:  # msgpack raises ValueError, ExtraData, FormatError, ...
        raise ProtocolError(f"not a msgpack frame: {type(exc).__name__}") from exc
    if not isinstance(ops, list):
        raise ProtocolError("a frame must be a list of operations")
    return [validate(op, allowed) for op in ops]


async def receive_ops(ws: Any, allowed: frozenset[str], peer: str) -> AsyncIterator[list[Message]]:
    """Validated batches from a client-side websocket, until it closes or misbehaves
    (a bad frame from ``peer`` is logged and ends the stream)."""
    async for raw in ws:
        if raw.type != aiohttp.WSMsgType.BINARY:
            return
        try:
            yield decode(raw.data, allowed)
        except ProtocolError as exc:
            log.error("bad message from %s: %s", peer, exc)
            return


def ops_allowed(*ops: str) -> frozenset[str]:
    unknown = set(ops) - SCHEMAS.keys()
    assert not unknown, unknown
    return frozenset(ops)


class BatchedSend:
    """Collects outgoing operations and flushes them as one frame every ``interval`` seconds.

    ``send`` never blocks and never awaits, so state-machine code can emit freely; a closed
    connection drops what is pending (the peer's loss is handled by whoever owns it).
    """

    def __init__(self, write: Callable[[bytes], Awaitable[None]], interval: float = 0.002) -> None:
        self._write = write
        self._interval = interval
        self._buffer: list[Message] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, *msgs: Mapping[str, Any]) -> None:
        if self.closed:
            return
        self._buffer.extend(dict(m) for m in msgs)
        self._wake.set()

    async def _run(self) -> None:
        # Batch only when messages come faster than the interval: a lone message goes out
        # at once, a burst waits at most ``interval`` after the previous write.
        loop = asyncio.get_running_loop()
        last = 0.0
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            wait = last + self._interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not self._buffer:
                continue
            batch, self._buffer = self._buffer, []
            last = loop.time()
            try:
                await self._write(encode(batch))
            except (ConnectionError, RuntimeError) as exc:
                log.debug("batched send stopped: %s", exc)
                self.closed = True

    async def flush(self) -> None:
        if self._buffer and not self.closed:
            batch, self._buffer = self._buffer, []
            await self._write(encode(batch))

    async def close(self) -> None:
        try:
            await self.flush()
        except (ConnectionError, RuntimeError) as exc:  # the peer went first: nothing to do
            log.debug("batched send closed before its last batch went out: %s", exc)
        self.closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
