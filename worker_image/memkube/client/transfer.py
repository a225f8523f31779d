"""Moving values in and out of the pool.

``fetch`` takes what it can straight from the workers (``direct.py``: only when this client
reaches them) and the rest through ``POST /api/v1/gather`` (the scheduler collects the
frames from the holders and waits out recomputations); ``scatter`` likewise sends what it
can straight to the workers the scheduler places the values on, and the rest through
``POST /api/v1/scatter`` (the scheduler places and stores them). Serialization runs in a
thread, off the client's loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import msgpack

from .. import serialize
from ..errors import AuthenticationError, CommError, DataLostError, ProtocolError, TaskError
from ..serving import stream_buffers
from . import direct
from .futures import ERROR

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .client import Client


async def fetch(client: Client, keys: list[str]) -> dict[str, Any]:
    """Values of keys in memory; raises the task's error, or DataLostError if gone."""
    inline = _inline_values(client, keys)
    if len(inline) == len(keys):
        return inline
    keys = [k for k in keys if k not in inline]
    items: dict[str, list[memoryview]] = {}
    rest = keys
    try:
        items, rest = await direct.fetch_direct(client, client.routes, keys)
    except CommError:
        rest = keys  # the who-has request failed: the scheduler path says why
    values = await fetch_through_scheduler(client, rest) if rest else {}
    values.update(inline)
    if items:
        loop = asyncio.get_running_loop()
        values.update(await loop.run_in_executor(None, _loads_all, items))
    return values


def _inline_values(client: Client, keys: list[str]) -> dict[str, Any]:
    """The values of the keys whose small results came inline (on the loop: each is at most
    ``protocol.INLINE_LIMIT`` bytes, and the client keeps at most ``INLINE_BUDGET``)."""
    out: dict[str, Any] = {}
    for key in keys:
        state = client._states.get(key)
        if state is not None and state.value is not None:
            out[key] = serialize.loads(serialize.unpack(state.value))
    return out


async def fetch_through_scheduler(client: Client, keys: list[str]) -> dict[str, Any]:
    """Values of keys gathered by the scheduler (``POST /api/v1/gather``)."""
    try:
        # the scheduler answers once it has every value: it may wait out recomputations
        answer = await client._bulk.post(client.address, "/api/v1/gather",
                                         msgpack.packb({"keys": keys}),
                                         connect_timeout=client.timeout, patient=True)
    except (OSError, ProtocolError) as exc:
        raise CommError(f"gather from {client.address} failed: {exc}") from exc
    if answer.status == 401:
        raise AuthenticationError("scheduler rejected the token")
    if answer.status != 200:
        text = bytes(answer.body[:200]).decode(errors="replace")
        raise CommError(f"gather from {client.address} failed: {answer.status} {text}")
    payload = answer.body
    items, missing, errs = serialize.unpack_bundle(payload)
    if errs:
        key, why = next(iter(errs.items()))
        raise TaskError(f"the result of {key!r} cannot be serialized: {why}")
    for key in missing:
        state = client._states.get(key)
        if state is not None and state.status == ERROR and state.exception is not None:
            raise state.exception
    if missing:
        raise DataLostError(f"keys {missing[:3]} are in no worker's memory")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _loads_all, items)


async def scatter(client: Client, data: Any, hash_keys: bool) -> Any:
    """Upload ``data`` (one value, a list or a dict); futures in the same structure."""
    if isinstance(data, dict):
        items = dict(data)
    elif isinstance(data, (list, tuple)):
        items = {str(i): v for i, v in enumerate(data)}
    else:
        items = {"0": data}
    loop = asyncio.get_running_loop()
    frames = await loop.run_in_executor(None, _dumps_all, items)
    keys = {name: f"{type(items[name]).__name__}-{_token(fr) if hash_keys else uuid.uuid4().hex}"
            for name, fr in frames.items()}
    by_key = {keys[n]: fr for n, fr in frames.items()}
    futures = {name: client._new_future(key) for name, key in keys.items()}
    try:
        rest = await direct.scatter_direct(client, client.routes, by_key)
    except CommError:
        rest = list(by_key)
    if rest:
        await scatter_through_scheduler(client, {k: by_key[k] for k in rest})
    sent = {fut.key: fut for fut in futures.values() if fut.key not in rest}
    if sent:
        # A worker that stored values and died before its report reached the scheduler
        # leaves them unregistered: after a while they go through the scheduler instead
        # (a late report of a live worker then only adds a copy).
        waits = [asyncio.ensure_future(f._state.wait()) for f in sent.values()]
        _done, late = await asyncio.wait(waits, timeout=REGISTER_WAIT)
        for w in late:
            w.cancel()
        unregistered = [k for k, f in sent.items() if not f._state.done()]
        if unregistered:
            log.warning("%d directly scattered keys were not registered within %s s; "
                        "sending them through the scheduler", len(unregistered),
                        REGISTER_WAIT)
            await scatter_through_scheduler(client, {k: by_key[k] for k in unregistered})
    for fut in futures.values():
        await fut._state.wait()
    if isinstance(data, dict):
        return futures
    if isinstance(data, (list, tuple)):
        return [futures[str(i)] for i in range(len(data))]
    return futures["0"]


#: Seconds a directly scattered value may take to be registered by the scheduler.
REGISTER_WAIT = 30.0
#: Bytes of values per ``POST /api/v1/scatter`` (the scheduler reads each body whole).
SCHEDULER_BATCH = 64 * 2**20


async def scatter_through_scheduler(client: Client,
                                    items: dict[str, list[serialize.Frame]]) -> None:
    """``POST /api/v1/scatter`` in batches, two in flight: the scheduler places and stores
    the values."""
    assert client._session is not None
    session = client._session
    url = client.address.http + "/api/v1/scatter?client=" + client.id
    lanes = asyncio.Semaphore(2)

    async def send(keys: list[str]) -> None:
        bundle = serialize.pack_bundle({k: items[k] for k in keys})
        headers = {"Content-Length": str(serialize.nbytes(bundle))}
        async with lanes:
            try:
                async with session.post(url, data=stream_buffers(bundle),
                                        headers=headers) as resp:
                    if resp.status == 401:
                        raise AuthenticationError("scheduler rejected the token")
                    if resp.status != 200:
                        raise CommError(f"scatter failed: {resp.status} {await resp.text()}")
            except aiohttp.ClientError as exc:
                raise CommError(f"scatter to {client.address} failed: {exc}") from exc

    await asyncio.gather(*(send(keys) for keys in direct.batches(items, SCHEDULER_BATCH)))


def _token(frames: list[serialize.Frame]) -> str:
    """A content hash of a value's frames (equal values, equal keys), without copying them."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(serialize.pack_header(frames))
    for frame in frames:
        digest.update(frame)
    return digest.hexdigest()


def _loads_all(items: dict[str, list[memoryview]]) -> dict[str, Any]:
    return {k: serialize.loads(frames) for k, frames in items.items()}


def _dumps_all(items: dict[str, Any]) -> dict[str, list[serialize.Frame]]:
    return {k: serialize.dumps(v) for k, v in items.items()}



