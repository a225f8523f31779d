"""Control messages between clients, the scheduler and workers.

Every websocket frame is one msgpack-encoded *list* of operations, each a map with an
``"op"`` string, so that thousands of small events travel in a handful of frames
(:class:`BatchedSend` collects them for a few milliseconds). Values (task functions,
arguments, results) are never control messages: they travel as opaque pickled ``bytes``
fields or over HTTP as frames (:mod:`memkube.serialize`).

Two levels of malformed. A frame that cannot be read (not msgpack, not a list, over the
size limit, text) raises :class:`~memkube.errors.ProtocolError` and the server closes that
one connection. An operation that does not fit its schema — every field is checked, down
to each task of a graph, each key and each priority item — raises :class:`InvalidMessage`;
the scheduler answers it with an ``error`` naming the op and the field and keeps the
connection, so one client's bad message never reaches the state machine, a worker or
another client.

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

#: Longest key accepted (characters); Dask keys (reprs of tuples) stay far below.
MAX_KEY = 10_000
#: Most items in a priority (client, batch, position, ...).
MAX_PRIORITY = 16

_STR, _INT, _NUM, _BYTES, _BOOL = "str", "int", "num", "bytes", "bool"
_LIST, _MAP, _ANY = "list", "map", "any"
_COUNT = "int >= 0"
_KEY = "key (a non-empty string)"
_KEYS = "list of keys"
_STRS = "list of strings"
_KEY_SIZES = "map of key to int >= 0"
_WHO_HAS = "map of key to list of strings"
_PRIORITY = "list of ints"
_TASKS = "list of tasks {key, run_spec, deps, priority}"
_MEMORY = "map of memory figures"

#: The fields each op must carry, by sender. Extra fields are ignored (forward compatible).
SCHEMAS: dict[str, dict[str, str]] = {
    # client -> scheduler
    "register-client": {"client": _STR},
    "update-graph": {"tasks": _TASKS, "wants": _KEYS},
    "release-keys": {"keys": _KEYS},
    "cancel-keys": {"keys": _KEYS},
    "persist-keys": {"keys": _KEYS},
    "replicate": {"keys": _KEYS, "n": _COUNT},
    "who-has": {"keys": _KEYS, "id": _INT},
    "info": {"id": _INT},
    "retire": {"id": _INT, "names": _STRS, "n": _COUNT},
    "wait-for-workers": {"id": _INT, "n": _COUNT},
    "scattered": {"keys": _MAP},
    "scatter-plan": {"id": _INT, "keys": _KEY_SIZES},
    "heartbeat-client": {},
    # worker -> scheduler
    "register-worker": {"address": _STR, "name": _STR, "nthreads": _COUNT, "host": _STR,
                        "node": _STR, "pid": _COUNT, "keys": _KEY_SIZES, "memory": _MEMORY},
    "task-finished": {"key": _KEY, "nbytes": _COUNT, "type": _STR},
    "task-erred": {"key": _KEY, "exception": _BYTES, "traceback": _STR, "text": _STR},
    "add-keys": {"keys": _KEY_SIZES},
    "missing-data": {"key": _KEY, "dep": _KEY, "worker": _STR},
    "lost-keys": {"keys": _KEYS},
    "heartbeat-worker": {"memory": _MEMORY, "executing": _COUNT, "ready": _COUNT},
    "worker-status": {"status": _STR},
    "memory-restart": {"reason": _STR},
    "reschedule": {"key": _KEY},
    "cannot-fit": {"key": _KEY, "peak": _INT, "limit": _INT},
    "scattered-data": {"grant": _STR, "keys": _KEY_SIZES},
    # scheduler -> worker
    "compute-task": {"key": _KEY, "run_spec": _BYTES, "who_has": _WHO_HAS,
                     "priority": _PRIORITY},
    "free-keys": {"keys": _KEYS},
    "acquire-replicas": {"who_has": _WHO_HAS},
    "cancel-compute": {"key": _KEY},
    "close-worker": {"reason": _STR},
    "expect-data": {"grant": _STR, "client": _STR, "keys": _KEY_SIZES},
    # scheduler -> client
    "welcome": {"client": _STR, "address": _STR},
    "key-in-memory": {"key": _KEY, "type": _STR},
    "task-erred-client": {"key": _KEY, "exception": _BYTES, "traceback": _STR, "text": _STR},
    "key-cancelled": {"key": _KEY, "reason": _STR},
    "reply": {"id": _INT, "result": _ANY},
    "error": {"message": _STR},
}

#: A result whose frames take at most this many bytes travels inline, when a client wants
#: it: in the worker's ``task-finished`` and the scheduler's ``key-in-memory`` ("value",
#: ``serialize.pack_frames``), so ``submit(...).result()`` needs no transfer afterwards.
INLINE_LIMIT = 64 << 10

#: Fields that may be absent; when present they must fit.
OPTIONAL: dict[str, dict[str, str]] = {
    "task-finished": {"duration": _NUM, "value": _BYTES},
    "key-in-memory": {"value": _BYTES},
    "worker-status": {"reason": _STR},
    "compute-task": {"nbytes": _KEY_SIZES, "inline": _BOOL},
    "acquire-replicas": {"nbytes": _KEY_SIZES},
    "scattered-data": {"types": _MAP},
    "expect-data": {"ttl": _NUM},
    # an error answers the request with this id, or fails the futures of these keys
    "error": {"id": _INT, "keys": _KEYS, "request": _STR},
}

_INT64 = (-(2**63), 2**64)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_key(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= MAX_KEY


def _is_strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_task(t: Any) -> bool:
    if not isinstance(t, dict) or not _is_key(t.get("key")):
        return False
    if not isinstance(t.get("run_spec"), (bytes, bytearray)):
        return False
    deps, priority = t.get("deps", []), t.get("priority", [])
    return (isinstance(deps, list) and all(_is_key(d) for d in deps)
            and _CHECKS[_PRIORITY](priority))


def _is_memory(v: Any) -> bool:
    """Figures the scheduler computes with: numbers where it does arithmetic."""
    if not isinstance(v, dict):
        return False
    for field in ("limit", "managed", "unmanaged", "spilled", "process", "max_spill",
                  "cgroup_usage"):
        if v.get(field) is not None and not _is_num(v[field]):
            return False
    thresholds = v.get("thresholds", {})
    if thresholds is None:
        return True
    return isinstance(thresholds, dict) and all(
        x is None or _is_num(x) for x in thresholds.values())


_CHECKS: dict[str, Callable[[Any], bool]] = {
    _STR: lambda v: isinstance(v, str),
    _INT: _is_int,
    _COUNT: lambda v: _is_int(v) and 0 <= v < _INT64[1],
    _NUM: _is_num,
    _BYTES: lambda v: isinstance(v, (bytes, bytearray)),
    _BOOL: lambda v: isinstance(v, bool),
    _LIST: lambda v: isinstance(v, list),
    _MAP: lambda v: isinstance(v, dict),
    _ANY: lambda v: True,
    _KEY: _is_key,
    _KEYS: lambda v: isinstance(v, list) and all(_is_key(x) for x in v),
    _STRS: _is_strs,
    _KEY_SIZES: lambda v: isinstance(v, dict) and all(
        _is_key(k) and _is_int(n) and n >= 0 for k, n in v.items()),
    _WHO_HAS: lambda v: isinstance(v, dict) and all(
        _is_key(k) and _is_strs(a) for k, a in v.items()),
    _PRIORITY: lambda v: isinstance(v, list) and len(v) <= MAX_PRIORITY and all(
        _is_int(x) and _INT64[0] <= x < _INT64[1] for x in v),
    _TASKS: lambda v: isinstance(v, list) and all(_is_task(t) for t in v),
    _MEMORY: _is_memory,
}


class InvalidMessage(ProtocolError):
    """One operation of a well-formed frame does not fit its schema: the sender is told
    (``error`` naming the op and the field) and its connection stays open."""

    def __init__(self, message: str, op: str = "", request_id: int | None = None) -> None:
        super().__init__(message)
        self.op, self.request_id = op, request_id


def validate(msg: Any, allowed: frozenset[str] | None = None) -> Message:
    """Check one operation against :data:`SCHEMAS`; raise InvalidMessage if it does not fit."""
    if not isinstance(msg, dict):
        raise InvalidMessage(f"operation is a {type(msg).__name__}, not a map")
    op = msg.get("op")
    if not isinstance(op, str):
        raise InvalidMessage("operation has no string 'op'")
    rid = msg.get("id") if _is_int(msg.get("id")) else None
    schema = SCHEMAS.get(op)
    if schema is None or (allowed is not None and op not in allowed):
        raise InvalidMessage(f"unknown or forbidden operation {op[:64]!r}", op[:64], rid)
    for field, kind in schema.items():
        if field not in msg:
            raise InvalidMessage(f"{op}: missing field {field!r}", op, rid)
        if not _CHECKS[kind](msg[field]):
            raise InvalidMessage(f"{op}: field {field!r} must be a {kind}"
                                 + _first_bad(kind, msg[field]), op, rid)
    for field, kind in OPTIONAL.get(op, {}).items():
        if field in msg and not _CHECKS[kind](msg[field]):
            raise InvalidMessage(f"{op}: field {field!r} must be a {kind}", op, rid)
    return msg


def _first_bad(kind: str, value: Any) -> str:
    """Where in a list of tasks the first bad one is (the rest of the message is fine)."""
    if kind != _TASKS or not isinstance(value, list):
        return ""
    for i, task in enumerate(value):
        if not _is_task(task):
            key = task.get("key") if isinstance(task, dict) else None
            return f" (task {i}" + (f", key {str(key)[:80]!r})" if key is not None else ")")
    return ""


def encode(messages: list[Message]) -> bytes:
    return msgpack.packb(messages, use_bin_type=True)  # type: ignore[no-any-return]


def decode_frame(frame: bytes | str) -> list[Any]:
    """The operations of one websocket frame, unchecked; ProtocolError if the frame itself
    is unreadable (not msgpack, not a list, too large): that ends the connection."""
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
    return ops


def decode(frame: bytes | str, allowed: frozenset[str] | None = None) -> list[Message]:
    """Decode and validate one websocket frame (any bad operation raises)."""
    return [validate(op, allowed) for op in decode_frame(frame)]


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
