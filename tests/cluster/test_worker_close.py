"""A worker closing while spill files are still being deleted in its I/O threads."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from inprocess_pool import Pool


async def test_close_waits_for_the_deletions_in_flight(pool: Pool) -> None:
    worker = pool.workers[0]
    data = worker.memory.data
    keys = [f"held-{i}" for i in range(4)]
    for i, key in enumerate(keys):
        data[key] = np.random.default_rng(i).random(1 << 18)  # 2 MiB, incompressible
        assert data.evict(key) > 0
    spill_dir = worker.memory._directory.path
    assert len(list(spill_dir.glob("*.spill"))) == 4
    order: list[str] = []
    real_discard, real_close = data.discard, worker.memory.close

    def slow_discard(blob: Any) -> None:
        time.sleep(0.1)  # a slow unlink on a busy disk
        real_discard(blob)
        order.append("deleted")

    async def close_memory() -> None:
        order.append("spill directory removed")
        await real_close()

    data.discard = slow_discard  # type: ignore[method-assign]
    worker.memory.close = close_memory  # type: ignore[method-assign]
    worker._free(keys)  # the deletions go to the I/O threads
    await worker.close()
    assert order == ["deleted"] * 4 + ["spill directory removed"]
    assert not spill_dir.exists()
