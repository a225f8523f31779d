"""Every endpoint but the probes needs the token; hostile frames close only their connection."""

from __future__ import annotations

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inprocess_pool import Pool
from memkube import Client
from memkube.addresses import parse_address
from memkube.errors import AuthenticationError

GUARDED = [("GET", "/api/v1/pool"), ("POST", "/api/v1/retire"), ("POST", "/api/v1/events"),
           ("POST", "/api/v1/gather"), ("POST", "/api/v1/scatter"), ("GET", "/metrics"),
           ("GET", "/dashboard/api/pool"), ("GET", "/ws/client"), ("GET", "/ws/worker")]


async def test_scheduler_endpoints_need_the_token(pool: Pool, caplog: pytest.LogCaptureFixture) -> None:
    base = pool.scheduler.http_address
    async with aiohttp.ClientSession() as session:
        for method, path in GUARDED:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with session.request(method, base + path, headers=headers) as resp:
                    assert resp.status == 401, (method, path, headers)
        for probe in ("/health", "/ready"):
            async with session.get(base + probe) as resp:
                assert resp.status == 200
        good = {"Authorization": f"Bearer {pool.token}"}
        async with session.get(base + "/api/v1/pool", headers=good) as resp:
            assert resp.status == 200
            assert len((await resp.json())["workers"]) == 2
    assert "rejected unauthenticated" in caplog.text
    assert pool.token not in caplog.text


async def test_worker_data_endpoint_needs_the_token(pool: Pool) -> None:
    fut = pool.client.submit(sum, [1, 2])
    await fut.result()
    (holder,) = (await pool.client.who_has([fut]))[fut.key]
    url = parse_address(holder).http
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/data/{fut.key}") as resp:
            assert resp.status == 401
        async with session.post(f"{url}/data", data=msgpack.packb({"keys": [fut.key]})) as resp:
            assert resp.status == 401
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200


async def test_client_with_wrong_token_gets_authentication_error(pool: Pool) -> None:
    with pytest.raises(AuthenticationError):
        await Client(pool.scheduler.address, token="not-the-token", asynchronous=True)
    assert await pool.client.submit(sum, [1, 1]).result() == 2


frames = st.one_of(
    st.binary(max_size=64),
    st.lists(st.dictionaries(st.sampled_from(["op", "key", "keys", "tasks", "id", "client"]),
                             st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1),
                                       st.binary(max_size=8),
                                       st.lists(st.text(max_size=4), max_size=3)),
                             max_size=4), max_size=3).map(msgpack.packb),
)


@given(payload=frames)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_hostile_frames_close_only_that_connection(pool: Pool, payload: bytes) -> None:
    headers = {"Authorization": f"Bearer {pool.token}"}
    base = parse_address(pool.scheduler.address).ws
    async with aiohttp.ClientSession(headers=headers) as session:
        for path in ("/ws/client", "/ws/worker"):
            async with session.ws_connect(base + path) as ws:
                await ws.send_bytes(payload)
                await ws.send_bytes(b"\xc1 definitely not msgpack")
                msg = await ws.receive(timeout=5)
                while msg.type == aiohttp.WSMsgType.BINARY:  # welcome etc. before the close
                    msg = await ws.receive(timeout=5)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING)
    assert len(pool.scheduler.state.workers) == 2
    assert await pool.client.submit(len, [payload]).result() == 1


async def test_oversized_and_text_frames_are_refused(pool: Pool) -> None:
    headers = {"Authorization": f"Bearer {pool.token}"}
    base = parse_address(pool.scheduler.address).ws
    async with aiohttp.ClientSession(headers=headers) as session, \
            session.ws_connect(base + "/ws/client") as ws:
            await ws.send_str('{"op": "info"}')
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert await pool.client.submit(sum, [2, 2]).result() == 4
