"""Fixtures for the data-lifetime tier: a local pool of real worker processes whose spill
directories live under the test's tmp dir, and a helper to wait for pool figures (which
arrive with workers' heartbeats, once a second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from memkube import Client, LocalCluster
from waiting import wait_until


@pytest.fixture(scope="module")
def spill_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spill")


@pytest.fixture(scope="module")
def small_pool(spill_root: Path) -> Iterator[LocalCluster]:
    """Two workers of 300 MiB: twenty 16 MiB arrays make them spill."""
    with LocalCluster(n_workers=2, memory_limit="300MiB", log_level="ERROR",
                      worker_args=["--spill-dir", str(spill_root),
                                   "--heartbeat-interval", "0.2"]) as cluster:
        yield cluster


@pytest.fixture
def client(small_pool: LocalCluster) -> Iterator[Client]:
    with Client(small_pool) as c:
        yield c
    # every test leaves the pool empty for the next
    assert wait_until(lambda: not small_pool.scheduler.state.tasks, 10)
