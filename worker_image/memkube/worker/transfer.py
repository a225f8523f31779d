"""Fetching values from peer workers over HTTP (``POST /data`` with a list of keys).

One request per peer carries many keys (a batch the caller sized to its memory,
:mod:`.intake`); the answer is a bundle of pickle-5 frames
(:func:`memkube.serialize.pack_bundle`), stored in a thread by the caller. A peer that
cannot be reached, or does not hold a key, is reported back so the caller can try another
holder and finally tell the scheduler.
"""

from __future__ import annotations

import logging

import aiohttp
import msgpack

from .. import serialize
from ..addresses import parse_address
from ..errors import ProtocolError

log = logging.getLogger(__name__)


async def fetch_from_peer(
    session: aiohttp.ClientSession, address: str, keys: list[str]
) -> tuple[dict[str, list[memoryview]], list[str]]:
    """Fetch ``keys`` from the worker at ``address``: (frames by key, keys not obtained)."""
    url = parse_address(address).http + "/data"
    try:
        async with session.post(url, data=msgpack.packb({"keys": keys})) as resp:
            if resp.status != 200:
                log.warning("peer %s answered %s for %d keys", address, resp.status, len(keys))
                return {}, list(keys)
            payload = await resp.read()
        items, _missing, errors = serialize.unpack_bundle(payload)
    except (aiohttp.ClientError, OSError, ProtocolError, TimeoutError) as exc:
        log.warning("could not fetch %d keys from %s: %s", len(keys), address, exc)
        return {}, list(keys)
    failed = [k for k in keys if k not in items]
    if errors:
        log.warning("peer %s could not serialize %s", address, ", ".join(errors))
    return items, failed
