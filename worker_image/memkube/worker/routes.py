"""The worker's data endpoints, used by peers and by the scheduler's gather/scatter proxy.

- ``POST /data`` with msgpack ``{"keys": [...]}``: a bundle of the keys' frames
  (:func:`memkube.serialize.pack_bundle`), spilled values read from disk without unpickling;
  at most :data:`SERVING` such answers are prepared and sent at once, so the bytes a worker
  holds for its peers stay bounded (each asks in batches sized to its own room,
  :mod:`.intake`) however many fetch from it, e.g. from a retiring worker;
- ``GET /data/{key}``: one key's frames in the wire layout (``serialize.pack_header``);
- ``PUT /data`` with a bundle: store the values (the scheduler's scatter), answer
  ``{key: {nbytes, type}}``. A client's own scatter goes to ``PUT /scatter/{grant}``
  instead, checked against what the scheduler granted (:mod:`.scatter`).

All disk and (de)serialization work runs in the worker's I/O threads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgpack
from aiohttp import web

from .. import serialize
from ..errors import ProtocolError, SpillError
from ..memory import sizeof
from ..protocol import MAX_FRAME
from ..serving import read_limited

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger(__name__)

SERVING = 2  # bundle answers in the making at once (the worker has two I/O threads)


def store_values(worker: Worker, items: dict[str, list[memoryview]]) -> dict[str, dict[str, Any]]:
    """Unpickle and keep scattered values (in an I/O thread); their sizes and types."""
    out = {}
    for key, frames in items.items():
        value = serialize.loads(frames)
        worker.memory.data[key] = value
        out[key] = {"nbytes": sizeof(value), "type": type(value).__qualname__}
    return out


def data_routes(worker: Worker) -> list[web.RouteDef]:
    serving = asyncio.Semaphore(SERVING)

    def collect(keys: list[str]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
        items: dict[str, Any] = {}
        missing: list[str] = []
        errors: dict[str, str] = {}
        for key in keys:
            try:
                items[key] = worker.memory.get_frames(key)
            except KeyError:
                missing.append(key)
            except SpillError as exc:
                log.error("spilled value %r is unreadable: %s", key, exc)
                missing.append(key)
                worker.forget(key)
                worker.report_lost([key])
            except Exception as exc:  # noqa: BLE001 - a value that cannot be serialized
                errors[key] = f"{type(exc).__name__}: {exc}"
        return items, missing, errors

    async def write(request: web.Request, buffers: list[Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = sum(memoryview(b).nbytes for b in buffers)
        await resp.prepare(request)
        for buf in buffers:
            await resp.write(buf)
        await resp.write_eof()
        return resp

    async def get_many(request: web.Request) -> web.StreamResponse:
        try:
            body = msgpack.unpackb(await request.read())
            keys = [str(k) for k in body["keys"]]
        except Exception:  # noqa: BLE001 - any malformed body is the caller's error
            raise web.HTTPBadRequest(text="body must be msgpack {keys: [...]}") from None
        loop = asyncio.get_running_loop()
        async with serving:
            items, missing, errors = await loop.run_in_executor(worker.io_executor, collect,
                                                                keys)
            bundle = serialize.pack_bundle(items, missing=missing, errors=errors)
            del items
            return await write(request, bundle)

    async def get_one(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        loop = asyncio.get_running_loop()
        items, _, errors = await loop.run_in_executor(worker.io_executor, collect, [key])
        if key in errors:
            raise web.HTTPInternalServerError(text=errors[key])
        if key not in items:
            raise web.HTTPNotFound(text=f"no key {key!r} here")
        frames = items[key]
        return await write(request, [serialize.pack_header(frames), *frames])

    async def put_many(request: web.Request) -> web.Response:
        try:
            items, _, _ = serialize.unpack_bundle(await read_limited(request, MAX_FRAME))
        except ProtocolError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        loop = asyncio.get_running_loop()
        stored = await loop.run_in_executor(worker.io_executor, store_values, worker, items)
        return web.json_response(stored)

    return [
        web.post("/data", get_many),
        web.get("/data/{key}", get_one),
        web.put("/data", put_many),
    ]
