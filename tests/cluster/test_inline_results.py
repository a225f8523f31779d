"""Small results a client waits for come inline with the scheduler's key-in-memory: no
transfer after the task; large ones, intermediates and those over the client's budget are
fetched from the workers as before."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from inprocess_pool import Pool
from memkube import serialize
from memkube.client import client as client_module


def inc(x: int) -> int:
    return x + 1


def big(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


async def test_a_small_result_needs_no_transfer(pool: Pool) -> None:
    routes = pool.client.routes
    fut = pool.client.submit(inc, 41)
    assert await fut.result() == 42
    assert await fut.result() == 42  # kept while the future lives
    assert routes.direct_bytes == 0 and routes.fallback_keys == 0
    packed = len(serialize.pack_frames(serialize.dumps(42)))
    assert pool.client.inline_bytes == packed
    assert pool.scheduler.state.inlined_bytes == packed
    del fut
    for _ in range(200):  # the release goes out batched
        if pool.client.inline_bytes == 0:
            break
        await asyncio.sleep(0.01)
    assert pool.client.inline_bytes == 0


async def test_a_large_result_is_fetched_from_its_worker(pool: Pool) -> None:
    fut = pool.client.submit(big, 1 << 17)  # 1 MiB
    value = await fut.result()
    assert value.nbytes == 1 << 20 and float(value[-1]) == (1 << 17) - 1
    assert pool.client.routes.direct_bytes >= 1 << 20
    assert pool.client.inline_bytes == 0 and pool.scheduler.state.inlined_bytes == 0


async def test_an_intermediate_is_not_sent_to_anyone(pool: Pool) -> None:
    x = pool.client.submit(inc, 1)
    y = pool.client.submit(inc, x)
    del x  # only y is waited for now; x is computed for y alone
    assert await y.result() == 3
    assert pool.scheduler.state.inlined_bytes == len(serialize.pack_frames(serialize.dumps(3)))


async def test_beyond_the_budget_results_are_fetched(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    one = len(serialize.pack_frames(serialize.dumps(1)))
    monkeypatch.setattr(client_module, "INLINE_BUDGET", 3 * one)
    futures = pool.client.map(inc, range(10))
    assert await pool.client.gather(futures) == list(range(1, 11))
    assert pool.client.inline_bytes <= 3 * one
    assert pool.client.routes.direct_bytes > 0  # the others came from the workers


def test_inline_value_packs_only_what_fits_and_can_be_pickled() -> None:
    import threading

    from memkube.protocol import INLINE_LIMIT
    from memkube.worker.worker import inline_value

    packed = inline_value({"a": [1, 2, 3]})
    assert packed is not None and len(packed) <= INLINE_LIMIT
    assert serialize.loads(serialize.unpack(packed)) == {"a": [1, 2, 3]}
    assert inline_value(b"x" * INLINE_LIMIT) is None  # its frames and prefix do not fit
    assert inline_value(threading.Lock()) is None  # the gather reports why, as before
