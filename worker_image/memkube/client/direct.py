"""Gathering straight from the workers when this client can reach them.

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

Not covered: scatter (it still goes through the scheduler, which places the values).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import msgpack

from .. import serialize
from ..addresses import parse_address
from ..errors import ProtocolError

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
    for key in keys:
        options = [a for a in who_has.get(key, ()) if a in reachable]
        if not options:
            rest.append(key)
            continue
        # spread over holders: transfers run in parallel, a dead holder costs its share
        holder = min(options, key=lambda a: len(plan.get(a, ())))
        plan.setdefault(holder, []).append(key)
    results = await asyncio.gather(*(
        _fetch_batch(session, routes, address, batch) for address, batch in plan.items()))
    items: Frames = {}
    for got in results:
        items.update(got)
    rest += [k for batch in plan.values() for k in batch if k not in items]
    routes.fallback_keys += len(rest)
    return items, rest


async def _fetch_batch(session: aiohttp.ClientSession, routes: Routes, address: str,
                       keys: list[str]) -> Frames:
    url = parse_address(routes.resolve(address)).http + "/data"
    try:
        async with session.post(url, data=msgpack.packb({"keys": keys})) as resp:
            if resp.status != 200:
                log.warning("worker %s answered %s to a direct gather", address, resp.status)
                return {}
            payload = await resp.read()
        items, _missing, errors = serialize.unpack_bundle(payload)
    except (aiohttp.ClientError, OSError, ProtocolError, TimeoutError) as exc:
        log.info("direct gather from %s failed (%s); through the scheduler instead",
                 address, exc)
        routes.forget(address)
        return {}
    routes.direct_bytes += len(payload)
    if errors:
        # the scheduler's path reports these errors to the caller
        items = {k: v for k, v in items.items() if k not in errors}
    return items


def loads_all(items: dict[str, list[memoryview]]) -> dict[str, Any]:
    return {k: serialize.loads(frames) for k, frames in items.items()}
