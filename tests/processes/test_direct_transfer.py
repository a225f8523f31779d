"""Direct scatter and gather with real worker processes (LocalCluster), and a SIGKILLed
holder of replicated scattered data.

The scheduler runs in this process (LocalCluster's loop thread), so its ``proxied_bytes``
(value bytes relayed through ``/api/v1/gather`` and ``/api/v1/scatter``) can be read here.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import pytest
from memkube import Client, LocalCluster


@pytest.fixture(scope="module")
def cluster() -> LocalCluster:
    with LocalCluster(n_workers=2, memory_limit="512MiB", replication_factor=2,
                      log_level="WARNING") as c:
        yield c


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scatter_and_gather_skip_the_scheduler(cluster: LocalCluster) -> None:
    before = dict(cluster.scheduler.proxied_bytes)
    with Client(cluster) as client:
        values = [np.full(1 << 18, float(i)) for i in range(6)]  # 2 MiB each
        futures = client.scatter(values)
        assert [float(v[0]) for v in client.gather(futures)] == [float(i) for i in range(6)]
        assert client.routes.scattered_bytes >= 12 << 20
        assert client.routes.direct_bytes >= 12 << 20
    assert cluster.scheduler.proxied_bytes == before


def test_a_port_forward_to_the_scheduler_alone_still_works(cluster: LocalCluster) -> None:
    before = cluster.scheduler.proxied_bytes["scatter"]
    bogus = f"tcp://127.0.0.1:{_closed_port()}"
    with Client(cluster) as client:
        client.routes.resolve = lambda address: bogus
        futures = client.scatter([np.full(1 << 18, float(i)) for i in range(4)])
        assert [float(v[0]) for v in client.gather(futures)] == [0.0, 1.0, 2.0, 3.0]
        assert client.routes.scatter_fallback_keys == 4
    assert cluster.scheduler.proxied_bytes["scatter"] - before >= 8 << 20


def test_replicated_scattered_data_survives_a_sigkill(cluster: LocalCluster) -> None:
    with Client(cluster) as client:
        futures = client.scatter([np.full(1 << 16, float(i)) for i in range(4)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            holders = client.who_has(futures)
            if all(len(set(h)) == 2 for h in holders.values()):
                break
            time.sleep(0.05)
        assert all(len(set(h)) == 2 for h in holders.values()), holders
        pid = next(iter(client.scheduler_info()["workers"].values()))["pid"]
        os.kill(pid, signal.SIGKILL)
        assert [float(v[0]) for v in client.gather(futures)] == [0.0, 1.0, 2.0, 3.0]
        client.wait_for_workers(2, timeout=60)
