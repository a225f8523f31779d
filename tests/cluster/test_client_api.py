"""The client API against an in-process pool (real HTTP and websockets on loopback)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from inprocess_pool import Pool
from memkube.errors import CancelledError, TaskError


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


async def test_submit_and_result(pool: Pool) -> None:
    fut = pool.client.submit(inc, 1)
    assert await fut.result(timeout=10) == 2
    assert fut.done() and fut.status == "finished"


async def test_map_gather_and_dependencies_across_workers(pool: Pool) -> None:
    futures = pool.client.map(inc, range(200))
    total = pool.client.submit(sum, futures)
    assert await total.result() == sum(range(1, 201))
    assert await pool.client.gather(futures[:5]) == [1, 2, 3, 4, 5]
    # both workers computed some of the map
    assert all(w.memory.figures()["managed"] >= 0 for w in pool.workers)
    holders = {a for addrs in (await pool.client.who_has(futures)).values() for a in addrs}
    assert len(holders) == 2


async def test_pure_keys_are_deterministic_and_deduplicated(pool: Pool) -> None:
    a, b = pool.client.submit(inc, 41), pool.client.submit(inc, 41)
    assert a.key == b.key and a.key.startswith("inc-")
    c = pool.client.submit(inc, 41, pure=False)
    assert c.key != a.key
    d = pool.client.submit(inc, 1, key="my-key")
    assert d.key == "my-key" and await d.result() == 2
    assert await a.result() == await c.result() == 42


async def test_gather_keeps_structure(pool: Pool) -> None:
    x, y = pool.client.submit(inc, 1), pool.client.submit(inc, 2)
    assert await pool.client.gather({"x": x, "ys": [y, x]}) == {"x": 2, "ys": [3, 2]}


async def test_scatter_and_use_as_argument(pool: Pool) -> None:
    a, b = await pool.client.scatter([10, 20])
    assert await pool.client.submit(add, a, b).result() == 30
    named = await pool.client.scatter({"k": 5})
    assert await named["k"].result() == 5


async def test_remote_exception_reraises_with_remote_traceback(pool: Pool) -> None:
    def boom(x: int) -> None:
        raise ZeroDivisionError(f"bad {x}")

    fut = pool.client.submit(boom, 3)
    with pytest.raises(ZeroDivisionError, match="bad 3") as info:
        await fut.result()
    assert any("in boom" in note for note in info.value.__notes__)
    assert isinstance(await fut.exception(), ZeroDivisionError)
    assert "boom" in fut.traceback()
    assert await pool.client.submit(inc, 1).result() == 2  # the pool is healthy


async def test_unpicklable_result_is_a_clear_error(pool: Pool) -> None:
    fut = pool.client.submit(threading.Lock)
    with pytest.raises(TaskError, match="cannot be serialized"):
        await fut.result()
    assert await pool.client.submit(inc, 2).result() == 3


async def test_exception_that_cannot_be_pickled(pool: Pool) -> None:
    class Weird(Exception):
        def __reduce__(self):  # type: ignore[no-untyped-def]
            raise TypeError("no pickling")

    def raise_weird() -> None:
        raise Weird("odd")

    with pytest.raises(TaskError, match="Weird: odd"):
        await pool.client.submit(raise_weird).result()


async def test_dependent_of_failed_task_fails_with_same_error(pool: Pool) -> None:
    def fail() -> int:
        raise KeyError("missing")

    bad = pool.client.submit(fail)
    after = pool.client.submit(inc, bad)
    with pytest.raises(KeyError):
        await after.result()


async def test_cancel(pool: Pool) -> None:
    import time

    blockers = [pool.client.submit(time.sleep, 0.5, pure=False) for _ in range(4)]
    queued = pool.client.submit(inc, 100)  # waits at the scheduler behind the blockers
    queued.cancel()
    with pytest.raises(CancelledError):
        await queued.result()
    await pool.client.gather(blockers)
    assert queued.key not in pool.scheduler.state.tasks


async def test_large_numpy_arrays_move_between_workers(pool: Pool) -> None:
    np = pytest.importorskip("numpy")
    arrays = pool.client.map(lambda i: np.full(2_000_000, i, dtype="f8"), range(4))
    total = pool.client.submit(lambda xs: float(sum(x.sum() for x in xs)), arrays)
    assert await total.result() == 2_000_000 * (0 + 1 + 2 + 3)
    back = await arrays[3].result()
    assert back.shape == (2_000_000,) and back[0] == 3


async def test_scheduler_info_reports_workers(pool: Pool) -> None:
    info = await pool.client.scheduler_info()
    assert len(info["workers"]) == 2
    for address, w in info["workers"].items():
        assert address.startswith("tcp://127.0.0.1:")
        assert w["name"] in ("w0", "w1") and w["nthreads"] == 1 and w["pid"] > 0
        assert w["memory"]["limit"] == 2**30


async def test_deleting_futures_frees_results(pool: Pool) -> None:
    futures = pool.client.map(inc, range(50))
    await pool.client.gather(futures)
    assert len(pool.scheduler.state.tasks) == 50
    del futures
    for _ in range(200):  # workers free in a thread, just after the scheduler forgets
        if not pool.scheduler.state.tasks and all(not w.memory.data for w in pool.workers):
            break
        await asyncio.sleep(0.01)
    assert not pool.scheduler.state.tasks
    assert all(len(w.memory.data) == 0 for w in pool.workers)


async def test_futures_passed_only_as_temporaries_stay_alive_until_sent(pool: Pool) -> None:
    # The inner list of futures dies as soon as submit() returns; its release must not
    # overtake the graph that depends on it.
    total = pool.client.submit(sum, pool.client.map(inc, range(20)))
    assert await total.result() == sum(range(1, 21))
