"""Scatter straight to the workers, through the scheduler when they are unreachable, and the
worker's ``/scatter/{grant}`` endpoint refusing what the scheduler did not grant.

Real pools on loopback (scheduler and workers in this process, real HTTP and websockets).
The scheduler's ``proxied_bytes`` counts the value bytes it relays: zero for a direct
scatter. Unreachable workers are made with the client's address seam (``Routes.resolve``),
as for the direct gather.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest
from inprocess_pool import Pool, unreachable_routes
from memkube import Client, serialize
from memkube.addresses import parse_address
from memkube.client import transfer
from memkube.errors import CommError, ProtocolError
from memkube.worker import scatter as worker_scatter


def arrays(n: int, size: int = 1 << 17) -> list[np.ndarray]:
    return [np.full(size, float(i)) for i in range(n)]  # 1 MiB each by default


async def holders_of(client: Client, futures: list) -> dict[str, list[str]]:
    return dict(await client.who_has(futures))


async def test_scatter_goes_straight_to_the_workers(pool: Pool) -> None:
    futures = await pool.client.scatter(arrays(8))
    assert pool.scheduler.proxied_bytes["scatter"] == 0  # no value byte through the scheduler
    routes = pool.client.routes
    assert routes.scatter_fallback_keys == 0
    assert routes.scattered_bytes >= 8 << 20
    # the scheduler recorded who has what: spread over both workers, held in their memory
    holders = await holders_of(pool.client, futures)
    assert {h for hs in holders.values() for h in hs} == {w.address for w in pool.workers}
    by_address = {w.address: w for w in pool.workers}
    for key, hs in holders.items():
        assert all(key in by_address[h].memory.data for h in hs)
    values = await pool.client.gather(futures)
    assert [float(v[0]) for v in values] == [float(i) for i in range(8)]
    assert not any(w.scatter_inbox.expected for w in pool.workers)  # grants used up
    assert not pool.scheduler.state.grants.grants


async def test_scattered_data_can_be_computed_on(pool: Pool) -> None:
    data = await pool.client.scatter({"a": np.arange(10), "b": np.arange(10) * 2})
    total = pool.client.submit(lambda a, b: int((a + b).sum()), data["a"], data["b"])
    assert await total.result() == 135


@pytest.mark.parametrize("unreachable", ["all", "one"])
async def test_unreachable_workers_are_scattered_to_through_the_scheduler(
        pool: Pool, unreachable: str) -> None:
    first = pool.workers[0].address
    routes = unreachable_routes(pool, unreachable)
    client = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    client.routes = routes
    try:
        futures = await client.scatter(arrays(8))
        values = await client.gather(futures)
        assert [float(v[0]) for v in values] == [float(i) for i in range(8)]
        assert routes.known(first) is False
        proxied = pool.scheduler.proxied_bytes["scatter"]
        if unreachable == "all":
            assert routes.scatter_fallback_keys == 8 and routes.scattered_bytes == 0
            assert proxied >= 8 << 20
        else:
            # the keys placed on the reachable worker went straight there
            assert 0 < routes.scatter_fallback_keys < 8
            assert routes.scattered_bytes >= (8 - routes.scatter_fallback_keys) << 20
            assert 0 < proxied < 8 << 20
    finally:
        await client.close()


@pytest.mark.parametrize("pool", [{"workers": 3, "replication_factor": 2}], indirect=True)
async def test_replication_factor_is_honoured(pool: Pool) -> None:
    futures = await pool.client.scatter(arrays(6))
    assert pool.scheduler.proxied_bytes["scatter"] == 0
    deadline = time.monotonic() + 30
    holders = await holders_of(pool.client, futures)
    while any(len(hs) < 2 for hs in holders.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        holders = await holders_of(pool.client, futures)
    assert all(len(set(hs)) == 2 for hs in holders.values()), holders
    # a lost copy is not a lost value
    victim = pool.workers[0]
    await victim.close()
    values = await pool.client.gather(futures)
    assert [float(v[0]) for v in values] == [float(i) for i in range(6)]


# ---------------------------------------------------------------------- the worker endpoint

async def grant_for(client: Client, sizes: dict[str, int]) -> tuple[str, dict[str, str]]:
    plan = await client._request({"op": "scatter-plan", "keys": sizes})
    return plan["grant"], plan["placement"]


def bundle(items: dict[str, list[bytes]]) -> bytes:
    return b"".join(bytes(b) for b in serialize.pack_bundle(items))


async def put(session: aiohttp.ClientSession, address: str, grant: str, body: bytes,
              headers: dict[str, str] | None = None) -> tuple[int, str]:
    url = parse_address(address).http + "/scatter/" + grant
    async with session.put(url, data=body, headers=headers or {}) as resp:
        return resp.status, await resp.text()


async def test_the_endpoint_needs_the_token(pool: Pool) -> None:
    frames = serialize.dumps(b"x" * 100)
    key = "bytes-token-test"
    grant, placement = await grant_for(pool.client, {key: serialize.nbytes(frames)})
    body = bundle({key: [bytes(f) for f in frames]})
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, _ = await put(session, placement[key], grant, body, headers)
            assert status == 401
    assert all(key not in w.memory.data for w in pool.workers)


async def test_hostile_requests_are_refused_and_others_go_on(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_scatter, "GRANT_WAIT", 0.5)
    value = serialize.dumps(np.arange(1000))
    size = serialize.nbytes(value)
    good = "ndarray-hostile-test"
    grant, placement = await grant_for(pool.client, {good: size})
    target = placement[good]
    other = next(w.address for w in pool.workers if w.address != target)
    auth = {"Authorization": f"Bearer {pool.token}"}
    frames = [bytes(f) for f in value]
    async with aiohttp.ClientSession(headers=auth) as session:
        # a grant the scheduler never gave, and a real grant at a worker it does not name
        assert (await put(session, target, "made-up", bundle({good: frames})))[0] == 403
        assert (await put(session, other, grant, bundle({good: frames})))[0] == 403
        # a declared size far beyond the grant: refused before any byte is read
        async with session.put(parse_address(target).http + "/scatter/" + grant,
                               data=b"x" * 1024,
                               headers={"Content-Length": str(1 << 40)}) as resp:
            assert resp.status == 413
        # bad frames: not a bundle; a bundle whose frame lengths exceed the body
        assert (await put(session, target, grant, b"\xff" * 64))[0] == 400
        lying = bytearray(bundle({good: frames}))
        assert (await put(session, target, grant, bytes(lying[:-10])))[0] == 400
        # a key the scheduler did not assign, and the right key with another size
        stray = bundle({"ndarray-not-granted": frames})
        assert (await put(session, target, grant, stray))[0] == 403
        short = bundle({good: [frames[0], frames[1][:-8]]})
        assert (await put(session, target, grant, short))[0] == 403
    assert all(good not in w.memory.data and "ndarray-not-granted" not in w.memory.data
               for w in pool.workers)
    # the other clients were not harmed: a second client scatters and gathers as usual,
    # and the first client's grant is still good for the bytes it named
    second = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    try:
        futures = await second.scatter(arrays(4))
        assert [float(v[0]) for v in await second.gather(futures)] == [0.0, 1.0, 2.0, 3.0]
        assert second.routes.scatter_fallback_keys == 0
    finally:
        await second.close()
    async with aiohttp.ClientSession(headers=auth) as session:
        status, _ = await put(session, target, grant, bundle({good: frames}))
        assert status == 200
        # the same key again is refused: a grant is good once
        assert (await put(session, target, grant, bundle({good: frames})))[0] == 403


async def test_a_declared_size_beyond_every_worker_is_refused(pool: Pool) -> None:
    with pytest.raises(ProtocolError, match="memory limit"):
        await grant_for(pool.client, {"huge": 1 << 50})
    # the client's scatter of such a plan falls back (here: any value at all still works)
    (fut,) = await pool.client.scatter([b"small"])
    assert await fut.result() == b"small"


async def test_values_whose_report_never_arrives_go_through_the_scheduler(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    # a worker that stores values and dies before its report reaches the scheduler: here
    # its report is dropped; the client notices the keys stay unregistered and resends them
    monkeypatch.setattr(transfer, "REGISTER_WAIT", 0.5)
    mute = pool.workers[0]
    send = mute.send_to_scheduler

    def drop_reports(msg: dict) -> None:
        if msg["op"] != "scattered-data":
            send(msg)

    monkeypatch.setattr(mute, "send_to_scheduler", drop_reports)
    futures = await pool.client.scatter(arrays(6))
    assert [float(v[0]) for v in await pool.client.gather(futures)] == [float(i)
                                                                       for i in range(6)]
    assert pool.scheduler.proxied_bytes["scatter"] > 0  # the muted worker's share
    assert pool.client.routes.scattered_bytes >= 6 << 20  # everything was sent directly first


@pytest.mark.parametrize("path", ["direct", "scheduler"])
async def test_a_scatter_may_not_replace_a_task_result(pool: Pool, path: str) -> None:
    fut = pool.client.submit(sum, [1, 2], key="sum-of-three")
    assert await fut.result() == 3
    frames = serialize.dumps(99)
    items = {"sum-of-three": frames}
    if path == "direct":
        with pytest.raises(ProtocolError, match="names a task"):
            await grant_for(pool.client, {"sum-of-three": serialize.nbytes(frames)})
    with pytest.raises(CommError, match="names a task"):
        await transfer.scatter_through_scheduler(pool.client, items)
    assert await fut.result() == 3
