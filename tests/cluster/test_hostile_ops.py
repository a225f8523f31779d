"""A bad or failing operation on a live scheduler is answered and harms no one: the sender's
connection stays, other clients' data and tasks are untouched, no worker reconnects.
Also: retirement timeouts, half-failed scatters, Client.close and wait_for_workers."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import aiohttp
import msgpack
import pytest
from hostile_ops import TEMPLATES, operations
from hypothesis import HealthCheck, assume, given, settings
from inprocess_pool import Pool
from memkube import Client
from memkube.addresses import parse_address
from memkube.errors import ProtocolError, RetireError, TimeoutError
from memkube.loop import LoopThread
from memkube.scheduler import Scheduler
from memkube.security import Auth, new_token


class RawClient:
    """A registered client websocket speaking raw msgpack."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pending: list[dict[str, Any]] = []  # received, not yet looked at

    async def send(self, *ops: Any) -> None:
        await self.ws.send_bytes(msgpack.packb(list(ops), use_bin_type=True))

    async def receive_until(self, op: str) -> dict[str, Any]:
        while True:
            while self.pending:
                m = self.pending.pop(0)
                if m["op"] == op:
                    return m
            msg = await self.ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            self.pending.extend(msgpack.unpackb(msg.data))


async def raw_client(pool: Pool, session: aiohttp.ClientSession) -> RawClient:
    ws = await session.ws_connect(parse_address(pool.scheduler.address).ws + "/ws/client")
    client = RawClient(ws)
    await client.send({"op": "register-client", "client": "hostile"})
    await client.receive_until("welcome")
    return client


def worker_sockets(pool: Pool) -> dict[str, int]:
    return {a: id(ws) for a, ws in pool.scheduler._worker_sockets.items()}


ISSUE_CASES = [
    # an integer key (workers rejected it and reconnected, losing scattered data)
    {"op": "update-graph", "wants": [], "tasks": [
        {"key": 5, "run_spec": b"x", "deps": [], "priority": [0]}]},
    # a non-integer priority (TypeError in the queue)
    {"op": "update-graph", "wants": ["k"], "tasks": [
        {"key": "k", "run_spec": b"x", "deps": [], "priority": ["high", None]}]},
    {"op": "update-graph", "tasks": [5], "wants": []},
    {"op": "update-graph", "wants": [["unhashable"]], "tasks": []},
    {"op": "update-graph", "wants": ["p"], "tasks": [  # a cycle
        {"key": "p", "run_spec": b"x", "deps": ["q"], "priority": [0]},
        {"key": "q", "run_spec": b"x", "deps": ["p"], "priority": [0]}]},
    {"op": "who-has", "keys": [{"a": 1}], "id": 4},
    {"op": "no-such-op", "id": 5},
    "not even a map",
]


@pytest.mark.parametrize("bad", ISSUE_CASES)
async def test_bad_operation_is_answered_and_harms_no_one(pool: Pool, bad: Any) -> None:
    scattered = await pool.client.scatter([b"precious"] * 4, hash=False)
    sockets = worker_sockets(pool)
    headers = {"Authorization": f"Bearer {pool.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        hostile = await raw_client(pool, session)
        await hostile.send(bad)
        error = await hostile.receive_until("error")
        assert error["message"]
        if isinstance(bad, dict) and bad["op"] == "update-graph":
            assert "tasks" in error["message"] or "wants" in error["message"] \
                or "cycle" in error["message"]
        # The same connection is still served.
        await hostile.send({"op": "info", "id": 77})
        reply = await hostile.receive_until("reply")
        assert reply["id"] == 77 and len(reply["result"]["workers"]) == 2
    assert worker_sockets(pool) == sockets  # no worker was disconnected
    assert await pool.client.gather(scattered) == [b"precious"] * 4
    assert await pool.client.submit(sum, [1, 2]).result() == 3
    assert "k" not in pool.scheduler.state.tasks and "p" not in pool.scheduler.state.tasks


def _packable(msg: dict) -> bool:
    try:
        msgpack.packb(msg, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return False
    return True


@given(msg=operations(frozenset(TEMPLATES) - {"register-client", "retire"}))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_generated_operations_keep_the_connection(pool: Pool, msg: dict) -> None:
    # junk integers beyond 64 bits (meant for the state machine's own checks) cannot be
    # put on the wire at all: msgpack refuses to encode them
    assume(_packable(msg))
    headers = {"Authorization": f"Bearer {pool.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        hostile = await raw_client(pool, session)
        await hostile.send(msg, {"op": "info", "id": 991})
        reply = await hostile.receive_until("reply")
        while reply["id"] != 991:  # who-has and wait-for-workers answer too
            reply = await hostile.receive_until("reply")
    assert len(pool.scheduler._worker_sockets) == 2
    assert await pool.client.submit(len, [1, 2]).result() == 2


async def test_a_failing_handler_fails_that_request_only(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(keys: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(pool.scheduler.state, "who_has", broken)
    fut = pool.client.submit(sum, [3, 4])
    with pytest.raises(ProtocolError, match="who-has failed in the scheduler: RuntimeError"):
        await pool.client.who_has([fut])
    # Gathering asks who-has too (direct gather): the fault was that one request's.
    monkeypatch.undo()
    assert await fut.result() == 7  # same connection, still served
    assert await pool.client.who_has([fut])


async def test_a_failing_update_graph_fails_its_futures(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(pool.scheduler.state, "update_graph", broken)
    fut = pool.client.submit(sum, [5, 5])
    with pytest.raises(ProtocolError, match="update-graph failed in the scheduler"):
        await asyncio.wait_for(fut.result(), 10)  # not a wait forever
    monkeypatch.undo()
    assert await pool.client.submit(sum, [5, 6]).result() == 11


async def test_retirement_that_times_out_is_cancelled(pool: Pool) -> None:
    data = await pool.client.scatter(list(range(20)), hash=False)
    holder = next(iter(pool.scheduler.state.tasks[data[0].key].who_has))
    with pytest.raises(RetireError, match="cancelled"):
        await pool.scheduler.retire(names=[holder.name], timeout=0)
    assert holder.status == "running" and not pool.scheduler.state.retirements
    await asyncio.sleep(1.0)  # the copies it asked for land; nothing closes the worker
    assert holder.address in pool.scheduler.state.workers
    assert holder.status == "running"
    assert await pool.client.gather(data) == list(range(20))


async def test_retire_more_than_the_pool_is_refused(pool: Pool) -> None:
    with pytest.raises(RetireError, match="only 2 are active"):
        await pool.client.retire_workers(n=5)
    assert len(pool.scheduler.state.workers) == 2


async def test_scatter_failing_halfway_leaves_no_orphans(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    # through the scheduler (the client reaches no worker, as behind a port-forward)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        bogus = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    pool.client.routes.resolve = lambda address: bogus
    session = pool.scheduler._session
    assert session is not None
    real_put = session.put
    calls = []

    def flaky_put(url: str, **kwargs: Any) -> Any:
        calls.append(url)
        if len(calls) == 2:
            raise aiohttp.ClientConnectionError("injected")
        return real_put(url, **kwargs)

    monkeypatch.setattr(session, "put", flaky_put)
    with pytest.raises(Exception, match="injected"):
        await pool.client.scatter([b"a" * 100, b"b" * 100, b"c" * 100, b"d" * 100],
                                  hash=False)
    monkeypatch.undo()
    for _ in range(100):
        if all(not w.memory.data for w in pool.workers):
            break
        await asyncio.sleep(0.02)
    assert [len(w.memory.data) for w in pool.workers] == [0, 0]
    assert not pool.scheduler.state.tasks


@pytest.fixture
def threaded_scheduler() -> Any:
    """A scheduler on its own loop thread, so a synchronous Client can use it here."""
    loop = LoopThread("test-scheduler")
    token = new_token()
    scheduler = loop.run(Scheduler(port=0, auth=Auth(token)).start())
    yield loop, scheduler, token
    loop.run(scheduler.close())
    loop.stop()


def test_close_stops_the_event_loop_thread(threaded_scheduler: Any) -> None:
    _, scheduler, token = threaded_scheduler
    before = {t.name for t in threading.enumerate()}
    client = Client(scheduler.address, token=token)
    assert client._loop_thread is not None and client._loop_thread.alive
    client.close()
    assert not client._loop_thread.alive
    assert {t.name for t in threading.enumerate()} <= before
    client.close()  # twice is fine


def test_wait_for_workers_awaits_registration(threaded_scheduler: Any, tmp_path: Any) -> None:
    from memkube.memory import MemoryConfig
    from memkube.worker import Worker

    loop, scheduler, token = threaded_scheduler
    with Client(scheduler.address, token=token) as client:
        with pytest.raises(TimeoutError):
            client.wait_for_workers(1, timeout=0.3)
        seen: list[str] = []
        real = scheduler.snapshot
        scheduler.snapshot = lambda: seen.append("info") or real()  # type: ignore[method-assign]
        # No limit: an in-process worker measures the whole test process.
        memory = MemoryConfig.from_options(limit="none", spill_dir=str(tmp_path), env={})
        worker = Worker(scheduler.address, name="late", memory=memory, auth=Auth(token))
        waiter = threading.Thread(target=client.wait_for_workers, args=(1,),
                                  kwargs={"timeout": 20})
        waiter.start()
        loop.run(asyncio.sleep(0.5))
        assert waiter.is_alive()  # still waiting, and without polling the pool snapshot
        loop.run(worker.start())
        waiter.join(20)
        assert not waiter.is_alive()
        assert seen == []
        loop.run(worker.close())


async def test_large_graphs_are_taken_in_chunks_with_others_served_between(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    from memkube.scheduler import server

    monkeypatch.setattr(server, "GRAPH_CHUNK", 1)  # one want per event-loop turn
    turns: list[str] = []
    real = pool.scheduler.state.client_wants
    other = await Client(pool.scheduler.address, token=pool.token, asynchronous=True)
    small: list[Any] = []

    def record(client_id: str, keys: Any) -> None:
        if not turns:  # the big graph has started: now the other client submits
            asyncio.get_running_loop().call_soon(lambda: small.append(other.submit(abs, -1)))
        turns.append(client_id)
        real(client_id, keys)

    monkeypatch.setattr(pool.scheduler.state, "client_wants", record)
    try:
        big = pool.client.map(abs, range(-2000, 0), batch_size=2000)
        assert await pool.client.gather(big) == list(range(2000, 0, -1))
        assert await small[0].result() == 1
    finally:
        await other.close()
    assert turns.count(pool.client.id) == 2000  # one want per turn
    # The other client's update-graph was handled between two chunks of the big one.
    assert other.id in turns[: len(turns) - turns[::-1].index(pool.client.id)]
