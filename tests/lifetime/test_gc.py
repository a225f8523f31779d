"""Data nobody references is freed promptly: memory and spill files; persisted data stays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from memkube import Client, LocalCluster
from waiting import spill_files, wait_until

MiB = 2**20


def block(i: int) -> np.ndarray:
    return np.random.default_rng(i).random(16 * MiB // 8)  # 16 MiB, incompressible


def pool_bytes(cluster: LocalCluster) -> tuple[int, int]:
    """(managed, spilled) over all workers, from their latest heartbeats."""
    workers = cluster.scheduler.state.workers.values()
    return (sum(int(w.memory.get("managed", 0)) for w in workers),
            sum(int(w.memory.get("spilled", 0)) for w in workers))


def fill(client: Client) -> list:
    futures = client.map(block, range(24))  # 384 MiB over 2 x 300 MiB workers: spills
    client.gather(client.map(np.sum, futures))
    return futures


def assert_released(cluster: LocalCluster, spill_root: Path) -> None:
    assert wait_until(lambda: not cluster.scheduler.state.tasks)
    assert wait_until(lambda: pool_bytes(cluster) == (0, 0)), pool_bytes(cluster)
    assert wait_until(lambda: not spill_files(spill_root)), spill_files(spill_root)


def test_del_frees_memory_and_spill_files(client: Client, small_pool: LocalCluster,
                                          spill_root: Path) -> None:
    futures = fill(client)
    assert wait_until(lambda: pool_bytes(small_pool)[1] > 0), "the workload did not spill"
    assert spill_files(spill_root)
    del futures
    assert_released(small_pool, spill_root)


def test_unpersist_frees_and_persist_keeps(client: Client, small_pool: LocalCluster,
                                           spill_root: Path) -> None:
    persisted = client.persist(client.map(block, range(20)))
    keys = {f.key for f in persisted}
    client.gather(client.map(np.sum, persisted))
    del persisted[:]  # the client's pin keeps them in the pool
    assert keys <= set(small_pool.scheduler.state.tasks)
    assert all(small_pool.scheduler.state.tasks[k].state == "memory" for k in keys)
    client.unpersist(list(client._persisted.values()))
    assert_released(small_pool, spill_root)


def test_scope_releases_on_exit_and_on_error(client: Client, small_pool: LocalCluster,
                                             spill_root: Path) -> None:
    with client.scope():
        kept = client.map(block, range(12))
        total = client.submit(sum, client.map(np.sum, kept)).result()
    assert total > 0
    assert kept[0].status == "cancelled"
    assert_released(small_pool, spill_root)
    with pytest.raises(RuntimeError, match="inside the scope"), client.scope():
        futures = client.map(block, range(12))
        client.gather(futures)
        raise RuntimeError("inside the scope")
    assert_released(small_pool, spill_root)


def test_persisted_context_manager(client: Client, small_pool: LocalCluster,
                                   spill_root: Path) -> None:
    with client.persisted(client.map(block, range(4))) as arrays:
        assert len(client.gather(arrays)) == 4
    assert_released(small_pool, spill_root)


def test_failed_task_holds_only_its_exception(client: Client, small_pool: LocalCluster) -> None:
    def explode(x: np.ndarray) -> None:
        raise ValueError("no thanks")

    data = client.submit(block, 99)
    failed = client.submit(explode, data)
    with pytest.raises(ValueError):
        failed.result()
    key = data.key
    del data
    state = small_pool.scheduler.state
    def input_freed() -> bool:  # it may stay as lineage of the failed task, without data
        ts = state.tasks.get(key)
        return ts is None or (ts.state == "released" and not ts.who_has)

    assert wait_until(input_freed)
    assert state.tasks[failed.key].state == "erred"
    assert not state.tasks[failed.key].who_has
