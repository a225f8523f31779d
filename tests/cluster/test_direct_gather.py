"""Gather straight from the workers, and through the scheduler when they are unreachable.

Real pools on loopback. Unreachable workers are made with the client's address seam
(``Routes.resolve``): the scheduler still reaches them at their real addresses, the client
dials a closed port instead, as a client behind a port-forward to the scheduler would.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from inprocess_pool import Pool, closed_port, silent_worker, unreachable_routes
from memkube import Client, bulk
from memkube.client.direct import Routes
from memkube.worker.transfer import fetch_from_peer


def make(i: int) -> np.ndarray:
    return np.full(1 << 17, float(i))  # 1 MiB


async def test_gather_reads_from_the_workers_directly(pool: Pool) -> None:
    futures = pool.client.map(make, range(8))
    values = await pool.client.gather(futures)
    assert [float(v[0]) for v in values] == [float(i) for i in range(8)]
    routes = pool.client.routes
    assert routes.fallback_keys == 0
    assert routes.direct_bytes >= 8 << 20
    holders = await pool.client.who_has(futures)
    assert all(routes.known(h) for hs in holders.values() for h in hs)


@pytest.mark.parametrize("unreachable", ["all", "one"])
async def test_unreachable_workers_are_gathered_through_the_scheduler(
        pool: Pool, unreachable: str) -> None:
    first = pool.workers[0].address
    routes = unreachable_routes(pool, unreachable)
    client = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    client.routes = routes
    try:
        futures = client.map(make, range(8))
        values = await client.gather(futures)
        assert [float(v[0]) for v in values] == [float(i) for i in range(8)]
        holders = await client.who_has(futures)
        on_first = [k for k, hs in holders.items() if hs == [first]]
        assert on_first  # two workers, eight tasks: some land on each
        assert routes.known(first) is False  # probed once and remembered
        assert routes.fallback_keys == (8 if unreachable == "all" else len(on_first))
        # the second gather does not probe again: the answer is remembered
        again = await client.gather(futures[:2])
        assert [float(v[0]) for v in again] == [0.0, 1.0]
    finally:
        await client.close()


async def test_a_holder_dying_mid_gather_falls_back(pool: Pool) -> None:
    # the direct path finds the holder gone; the scheduler's path waits out recovery
    futures = pool.client.map(make, range(6))
    await pool.client.gather(futures)
    victim = pool.workers[1]
    lost = [k for k, hs in (await pool.client.who_has(futures)).items() if victim.address in hs]
    assert lost
    await victim.close()
    values = await pool.client.gather(futures)
    assert [float(v[0]) for v in values] == [float(i) for i in range(6)]


async def both_copies(client: Client, futures: list) -> None:
    """Wait until the pool (replication factor 2) holds two copies of every key."""
    for _ in range(300):
        holders = await client.who_has(futures)
        if all(len(hs) == 2 for hs in holders.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not two copies of every key: {holders}")


@pytest.mark.parametrize("pool", [{"replication_factor": 2}], indirect=True)
async def test_keys_of_a_failing_holder_come_from_their_other_holder(pool: Pool) -> None:
    # both workers hold every key; the client reaches both, then one stops answering it
    # (as a SIGKILLed worker does before the scheduler knows): its share comes from the
    # other holder straight away, none through the scheduler
    broken: set[str] = set()
    bogus = f"tcp://127.0.0.1:{closed_port()}"
    routes = Routes(resolve=lambda address: bogus if address in broken else address)
    client = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    client.routes = routes
    try:
        futures = client.map(make, range(8))
        await client.gather(futures)
        await both_copies(client, futures)
        broken.add(pool.workers[0].address)
        before = pool.scheduler.proxied_bytes["gather"]
        values = await client.gather(futures)
        assert [float(v[0]) for v in values] == [float(i) for i in range(8)]
        assert routes.fallback_keys == 0
        assert pool.scheduler.proxied_bytes["gather"] == before
    finally:
        await client.close()


@pytest.mark.parametrize("pool", [{"replication_factor": 2}], indirect=True)
async def test_a_holder_that_goes_silent_is_given_up_on(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    # a force-deleted pod's address answers nothing, not even a reset: the gather stops
    # waiting for it after SILENT_PEER without a byte and takes its share from the other holder
    monkeypatch.setattr(bulk, "SILENT_PEER", 0.5)
    client = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    async with silent_worker() as silent:
        first = pool.workers[0].address
        client.routes = routes = Routes(resolve=lambda a: silent if a == first else a)
        try:
            futures = client.map(make, range(8))
            await both_copies(client, futures)
            values = await asyncio.wait_for(client.gather(futures), 20)
            assert [float(v[0]) for v in values] == [float(i) for i in range(8)]
            assert routes.fallback_keys == 0  # from the other holder, not the scheduler
            assert routes.known(first) is None  # to be probed again next time
        finally:
            await client.close()


async def test_a_peer_that_goes_silent_fails_the_fetch(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    # worker to worker: the fetch gives up and reports the keys as not obtained
    monkeypatch.setattr(bulk, "SILENT_PEER", 0.5)
    async with silent_worker() as silent:
        got, failed = await asyncio.wait_for(
            fetch_from_peer(pool.workers[0]._bulk, silent, ["a", "b"]), 20)
    assert (got, failed) == ({}, ["a", "b"])
