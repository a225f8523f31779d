"""A client's futures survive a dropped connection within the grace period, not beyond."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from inprocess_pool import Pool
from memkube import Client


def inc(x: int) -> int:
    return x + 1


async def drop_client_socket(pool: Pool, client: Client) -> None:
    """Close the scheduler's end of the client's websocket, as a network blip would."""
    comm = pool.scheduler._client_comms[client.id]
    sockets = [ws for ws in pool.scheduler._sockets if ws.send_bytes == comm._write]
    assert len(sockets) == 1
    await sockets[0].close()


@pytest.mark.parametrize("pool", [{"client_grace": 5.0}], indirect=True)
async def test_reconnect_within_grace_keeps_futures(pool: Pool) -> None:
    futures = pool.client.map(inc, range(10))
    assert await pool.client.gather(futures) == list(range(1, 11))
    await drop_client_socket(pool, pool.client)
    for _ in range(100):  # the client reconnects by itself
        await asyncio.sleep(0.05)
        if pool.client.status == "running" and pool.client.id in pool.scheduler._client_comms:
            break
    assert pool.client.status == "running"
    assert all(pool.scheduler.state.tasks[f.key].state == "memory" for f in futures)
    assert await pool.client.gather(futures) == list(range(1, 11))
    late = pool.client.submit(inc, 100)  # and it keeps working
    assert await late.result() == 101


@pytest.mark.parametrize("pool", [{"client_grace": 0.3}], indirect=True)
async def test_vanished_client_is_released_after_grace(pool: Pool) -> None:
    other = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    futures = other.map(inc, range(10))
    await other.gather(futures)
    keys = {f.key for f in futures}
    other.status = "closing"  # it will not reconnect: the process is gone, say
    await drop_client_socket(pool, other)
    await asyncio.sleep(0.1)
    assert keys <= set(pool.scheduler.state.tasks)  # still within the grace period
    await asyncio.sleep(0.5)
    assert not keys & set(pool.scheduler.state.tasks)  # released after it
    assert all(len(w.memory.data) == 0 for w in pool.workers)
    await other.close()


async def test_closing_while_reconnecting_stops_the_reconnection(pool: Pool) -> None:
    other = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    assert await other.submit(inc, 1).result() == 2
    session = other._session
    assert session is not None

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise aiohttp.ClientConnectionError("the scheduler is unreachable")

    session.ws_connect = unreachable  # type: ignore[method-assign]
    await drop_client_socket(pool, other)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if other.status == "reconnecting":
            break
    assert other.status == "reconnecting"
    reconnecting = other._reconnecting
    assert reconnecting is not None and not reconnecting.done()
    await other.close()
    # Nothing is left running on the loop (it used to be destroyed while still pending).
    assert reconnecting.done() and other.status == "closed"
