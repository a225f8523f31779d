"""Replication, recovery after SIGKILL, and graceful retirement with real worker processes.

The scheduler runs in this process (inside the LocalCluster), so the tests can count how
often each key was computed: a replicated key must never be recomputed.
"""

from __future__ import annotations

import os
import signal

import memkube
import numpy as np
import pytest
from memkube import Client, LocalCluster
from waiting import wait_until

MiB = 2**20


def block(i: int) -> np.ndarray:
    return np.full(MiB // 8, float(i))  # 1 MiB


def runs(cluster: LocalCluster, futures: list) -> list[int]:
    tasks = cluster.scheduler.state.tasks
    return [tasks[f.key].runs for f in futures]


def holders(cluster: LocalCluster, future: memkube.Future) -> set[str]:
    return {w.name for w in cluster.scheduler.state.tasks[future.key].who_has}


def kill_worker_holding(cluster: LocalCluster, future: memkube.Future) -> str:
    ts = cluster.scheduler.state.tasks[future.key]
    victim = min(ts.who_has, key=lambda w: w.name)
    os.kill(victim.pid, signal.SIGKILL)
    return victim.name


@pytest.fixture
def replicated() -> LocalCluster:
    with LocalCluster(n_workers=3, memory_limit="300MiB", replication_factor=2,
                      log_level="CRITICAL") as cluster:
        yield cluster


def test_replication_two_survives_sigkill_without_recomputation(
        replicated: LocalCluster) -> None:
    with Client(replicated) as client:
        data = client.map(block, range(30))
        scattered = client.scatter([np.arange(1000) * i for i in range(5)])
        client.gather(data)
        assert wait_until(lambda: all(len(holders(replicated, f)) == 2
                                      for f in data + scattered))
        kill_worker_holding(replicated, data[0])
        values = client.gather(data)
        assert [v[0] for v in values] == [float(i) for i in range(30)]
        assert [int(s[1]) for s in client.gather(scattered)] == [0, 1, 2, 3, 4]
        assert runs(replicated, data) == [1] * 30  # zero recomputations
        # the survivors re-replicate back to the factor, on distinct workers
        assert wait_until(lambda: all(len(holders(replicated, f)) == 2 for f in data), 30)
        shortfall = replicated.scheduler.snapshot()["replication"]["shortfall"]
        assert shortfall == 0


def test_replication_one_recomputes_from_lineage() -> None:
    with LocalCluster(n_workers=2, memory_limit="300MiB", log_level="CRITICAL") as cluster, \
            Client(cluster) as client:
        data = client.map(block, range(20))
        sums = client.map(np.sum, data)
        client.gather(sums)
        lost_holder = holders(cluster, data[0])
        kill_worker_holding(cluster, data[0])
        assert client.gather(sums) == [float(i) * MiB / 8 for i in range(20)]
        values = client.gather(data)
        assert [v[0] for v in values] == [float(i) for i in range(20)]
        recomputed = [r for r in runs(cluster, data) if r > 1]
        assert recomputed, f"nothing held by {lost_holder} was recomputed"


def test_unreplicated_scattered_data_is_lost_with_a_clear_error() -> None:
    with LocalCluster(n_workers=2, memory_limit="300MiB", log_level="CRITICAL") as cluster, \
            Client(cluster) as client:
        scattered = client.scatter(list(range(10)))
        kill_worker_holding(cluster, scattered[0])
        with pytest.raises(memkube.DataLostError, match="scattered"):
            client.gather(scattered)


def test_retirement_moves_data_without_loss_or_recomputation() -> None:
    with LocalCluster(n_workers=3, memory_limit="300MiB", log_level="CRITICAL") as cluster, \
            Client(cluster) as client:
        data = client.map(block, range(30))
        client.gather(data)
        before = cluster.worker_pids()
        result = client.retire_workers(n=1)
        (retired,) = result["retired"]
        assert retired["name"] in before
        proc = next(p for n, p in before.items() if n == retired["name"])
        assert wait_until(lambda: not _alive(proc), 10)  # exited cleanly ...
        assert wait_until(lambda: retired["name"] not in cluster.worker_pids())
        assert len(cluster.worker_pids()) == 2  # ... and was not restarted
        assert [v[0] for v in client.gather(data)] == [float(i) for i in range(30)]
        assert runs(cluster, data) == [1] * 30
        assert all(retired["name"] not in holders(cluster, f) for f in data)


def test_retirement_refused_when_no_worker_would_remain() -> None:
    with LocalCluster(n_workers=1, memory_limit="300MiB", log_level="CRITICAL") as cluster, \
            Client(cluster) as client:
        data = client.scatter([1, 2, 3])
        with pytest.raises(memkube.RetireError, match="no worker would remain"):
            client.retire_workers(n=1)
        assert client.gather(data) == [1, 2, 3]


def test_client_replicate_and_who_has(replicated: LocalCluster) -> None:
    with Client(replicated) as client:
        (fut,) = client.scatter([np.ones(10)])
        client.replicate([fut], n=3)
        assert wait_until(lambda: len(client.who_has([fut])[fut.key]) == 3)
        assert len(set(client.who_has([fut])[fut.key])) == 3


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
