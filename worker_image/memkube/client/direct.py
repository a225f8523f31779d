"""Gathering from and scattering to the workers directly when this client can reach them.

The scheduler's ``/api/v1/gather`` carries every byte twice (worker -> scheduler -> client).
When the client can open connections to the workers (a local pool, a client inside the
cluster), :func:`fetch_direct` asks the scheduler only *who has* the keys and fetches the
frames from the holders itself (``POST /data`` on each, in parallel, keys spread over their
holders), presenting the pool's token like every peer. Whatever cannot be had that way (no
reachable holder, a holder that died or no longer holds the key, a value that cannot be
serialized) goes through the scheduler as before, which also waits out recomputations.

No configuration: :class:`Routes` probes each advertised worker address once with a short
connect timeout (``GET /health``) and remembers the answer, so a client that reaches only
the scheduler (a port-forward) pays one short timeout per worker address, once. A worker
that fails a transfer is probed again next time. ``Routes.resolve`` is the seam that maps
an advertised address to the one to dial (tests make workers unreachable with it).

Scatter (:func:`scatter_direct`): the scheduler places the values (``scatter-plan``: one
worker per key, a grant it also gives those workers), and the client ``PUT``s each worker's
share to ``/scatter/{grant}`` there, in batches of about :data:`SCATTER_BATCH` bytes, up to
two per worker in flight. Keys whose worker this client cannot reach, or that a worker
refused or failed, are left to the scheduler's ``POST /api/v1/scatter``; the worker reports
what it stored and the scheduler records it (and replicates it as the pool's replication
factor asks), so the client waits for its futures as on the scheduler's path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from .. import serialize
from ..addresses import parse_address
from ..bulk import BulkClient, fetch_bundle
from ..errors import ProtocolError
from ..serialize import Frame
from ..serving import stream_buffers

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger(__name__)

Frames = dict[str, list[memoryview]]


class Routes:
    """Which worker addresses this client reaches directly (probed once, remembered)."""

    def __init__(self, *, connect_timeout: float = 0.5, retry_after: float = 60.0,
                 resolve: Callable[[str], str] | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after  # an unreachable address is probed again after this
        self.resolve: Callable[[str], str] = resolve or (lambda address: address)
        self._known: dict[str, tuple[bool, float]] = {}
        self._probing: dict[str, asyncio.Future[bool]] = {}
        self.direct_bytes = 0  # bytes gathered straight from workers (a figure)
        self.fallback_keys = 0  # keys that went through the scheduler instead
        self.scattered_bytes = 0  # bytes scattered straight to workers
        self.scatter_fallback_keys = 0  # keys scattered through the scheduler instead

    def known(self, address: str) -> bool | None:
        entry = self._known.get(address)
        if entry is None or (not entry[0] and time.monotonic() - entry[1] > self.retry_after):
            return None
        return entry[0]

    def forget(self, address: str) -> None:
        self._known.pop(address, None)

    async def reachable(self, session: aiohttp.ClientSession, address: str) -> bool:
        known = self.known(address)
        if known is not None:
            return known
        if address not in self._probing:
            self._probing[address] = asyncio.ensure_future(self._probe(session, address))
        try:
            return await asyncio.shield(self._probing[address])
        finally:
            self._probing.pop(address, None)

    async def _probe(self, session: aiohttp.ClientSession, address: str) -> bool:
        url = parse_address(self.resolve(address)).http + "/health"
        timeout = aiohttp.ClientTimeout(total=self.connect_timeout * 4,
                                        sock_connect=self.connect_timeout)
        try:
            async with session.get(url, timeout=timeout) as resp:
                ok = resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            ok = False
        if not ok:
            log.info("worker %s is not reachable from this client; gathering from it "
                     "through the scheduler", address)
        self._known[address] = (ok, time.monotonic())
        return ok


async def fetch_direct(client: Client, routes: Routes,
                       keys: list[str]) -> tuple[dict[str, list[memoryview]], list[str]]:
    """Frames of the keys fetched from their holders; and the keys left to the scheduler."""
    session = client._session
    assert session is not None
    who_has: dict[str, list[str]] = await client._request({"op": "who-has", "keys": keys})
    addresses = {a for holders in who_has.values() for a in holders}
    ok = await asyncio.gather(*(routes.reachable(session, a) for a in addresses))
    reachable = {a for a, good in zip(addresses, ok, strict=True) if good}
    plan: dict[str, list[str]] = {}
    rest: list[str] = []
    tried: dict[str, set[str]] = {}
    for key in keys:
        options = [a for a in who_has.get(key, ()) if a in reachable]
        if not options:
            rest.append(key)
            continue
        # spread over holders: transfers run in parallel, a dead holder costs its share
        holder = min(options, key=lambda a: len(plan.get(a, ())))
        plan.setdefault(holder, []).append(key)
        tried[key] = {holder}
    items: Frames = {}
    failed: set[str] = set()  # holders that served nothing: not asked again

    async def fetch(address: str, batch: list[str]) -> None:
        got = await _fetch_batch(client._bulk, routes, address, batch)
        items.update(got)
        if not got:
            failed.add(address)
        retry: dict[str, list[str]] = {}
        for key in batch:
            if key in got:
                continue
            # at once at another holder (a lost worker's keys have their replicas), not
            # through the scheduler after the other transfers
            options = [a for a in who_has.get(key, ())
                       if a in reachable and a not in tried[key] and a not in failed]
            if not options:
                rest.append(key)
                continue
            tried[key].add(options[0])
            retry.setdefault(options[0], []).append(key)
        await asyncio.gather(*(fetch(a, b) for a, b in retry.items()))

    await asyncio.gather(*(fetch(address, batch) for address, batch in plan.items()))
    routes.fallback_keys += len(rest)
    return items, rest


async def _fetch_batch(bulk: BulkClient, routes: Routes, address: str,
                       keys: list[str]) -> Frames:
    try:
        # a silent holder is given up on (bulk.SILENT_PEER) and the keys asked elsewhere
        items, _missing, errors, nbytes = await fetch_bundle(
            bulk, parse_address(routes.resolve(address)), keys,
            connect_timeout=routes.connect_timeout * 4)
    except (OSError, ProtocolError) as exc:
        log.info("direct gather from %s failed (%s); through the scheduler instead",
                 address, exc)
        routes.forget(address)
        return {}
    routes.direct_bytes += nbytes
    if errors:
        # the scheduler's path reports these errors to the caller
        items = {k: v for k, v in items.items() if k not in errors}
    return items


def loads_all(items: dict[str, list[memoryview]]) -> dict[str, Any]:
    return {k: serialize.loads(frames) for k, frames in items.items()}


#: Bytes of values per direct-scatter request (a larger value goes alone).
SCATTER_BATCH = 32 * 2**20


async def scatter_direct(client: Client, routes: Routes,
                         items: dict[str, list[Frame]]) -> list[str]:
    """Send the values to the workers the scheduler places them on; the keys left over."""
    session = client._session
    assert session is not None
    sizes = {k: serialize.nbytes(frames) for k, frames in items.items()}
    try:
        plan: dict[str, Any] = await client._request({"op": "scatter-plan", "keys": sizes})
    except ProtocolError as exc:  # refused (e.g. a key larger than any worker's limit)
        log.info("no direct scatter plan (%s); through the scheduler", exc)
        routes.scatter_fallback_keys += len(items)
        return list(items)
    placement: dict[str, str] = plan.get("placement") or {}
    grant = str(plan.get("grant") or "")
    addresses = sorted(set(placement.values()))
    ok = await asyncio.gather(*(routes.reachable(session, a) for a in addresses))
    reachable = {a for a, good in zip(addresses, ok, strict=True) if good}
    shares: dict[str, list[str]] = {}
    rest: list[str] = []
    for key in items:
        address = placement.get(key)
        if address in reachable:
            shares.setdefault(address, []).append(key)
        else:
            rest.append(key)
    results = await asyncio.gather(*(
        _send_share(session, routes, address, grant, {k: items[k] for k in keys})
        for address, keys in shares.items()))
    for failed in results:
        rest += failed
    routes.scatter_fallback_keys += len(rest)
    return rest


def batches(items: dict[str, list[Frame]], limit: int | None = None) -> list[list[str]]:
    """Keys grouped into requests of about ``limit`` (:data:`SCATTER_BATCH`) bytes each."""
    limit = SCATTER_BATCH if limit is None else limit
    out: list[list[str]] = []
    current: list[str] = []
    size = 0
    for key, frames in items.items():
        n = serialize.nbytes(frames)
        if current and size + n > limit:
            out.append(current)
            current, size = [], 0
        current.append(key)
        size += n
    if current:
        out.append(current)
    return out


async def _send_share(session: aiohttp.ClientSession, routes: Routes, address: str,
                      grant: str, items: dict[str, list[Frame]]) -> list[str]:
    """PUT one worker's share, two requests in flight; the keys that did not get there."""
    url = parse_address(routes.resolve(address)).http + "/scatter/" + grant
    lanes = asyncio.Semaphore(2)

    async def send(keys: list[str]) -> list[str]:
        async with lanes:
            buffers = serialize.pack_bundle({k: items[k] for k in keys})
            length = serialize.nbytes(buffers)
            try:
                async with session.put(url, data=stream_buffers(buffers),
                                       headers={"Content-Length": str(length)}) as resp:
                    if resp.status != 200:
                        log.warning("worker %s answered %s to a direct scatter: %s", address,
                                    resp.status, (await resp.text())[:200])
                        return keys
                    stored: dict[str, Any] = await resp.json()
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                log.info("direct scatter to %s failed (%s); through the scheduler instead",
                         address, exc)
                routes.forget(address)
                return keys
            routes.scattered_bytes += length
            return [k for k in keys if k not in stored]

    results = await asyncio.gather(*(send(keys) for keys in batches(items)))
    return [k for failed in results for k in failed]
