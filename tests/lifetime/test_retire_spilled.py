"""Retiring a worker whose unique data is mostly spilled, into receivers that are full too.

The kind scale-down scenario in small: every worker holds more than its memory limit (most
of it on disk), and the retired one is the worker holding the most unique data. Its keys
must reach the others without any receiver passing its memory lines (no memory restart, no
kernel OOM kill) and without a key being lost and recomputed.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from memkube import Client, LocalCluster, wait
from waiting import wait_until

MiB = 2**20
BLOCK = 4 * MiB
BLOCKS = 120  # 480 MiB in a pool of 3 x 128 MiB: every worker holds ~160 MiB


def make_block(i: int) -> bytes:
    """Deterministic and incompressible, so spilling really writes it."""
    return random.Random(i).randbytes(BLOCK)


def digest(block: bytes) -> str:
    return hashlib.sha256(block).hexdigest()


def test_retiring_the_fullest_worker_loses_nothing_and_kills_no_receiver(
        tmp_path: Path) -> None:
    with LocalCluster(n_workers=3, memory_limit="128MiB", cgroup=True, log_level="ERROR",
                      worker_args=["--spill-dir", str(tmp_path),
                                   "--heartbeat-interval", "0.2"]) as cluster, \
            Client(cluster) as client:
        state = cluster.scheduler.state
        blocks = client.map(make_block, range(BLOCKS))
        wait(blocks)
        expected = [digest(make_block(i)) for i in range(BLOCKS)]
        assert wait_until(lambda: sum(
            int(w.memory.get("spilled", 0)) for w in state.workers.values()) > 200 * MiB, 30)
        fullest = max(state.workers.values(), key=state.unique_bytes)
        name = fullest.name
        assert state.unique_bytes(fullest) > 128 * MiB  # more than a receiver's limit
        lost_before = sum(1 for e in state.events if e["kind"] == "key-lost")

        result = client.retire_workers(names=[name])

        assert [r["name"] for r in result["retired"]] == [name]
        assert wait_until(lambda: name not in cluster.worker_pids(), 30)
        assert len(cluster.worker_pids()) == 2
        assert all(fullest not in state.tasks[f.key].who_has for f in blocks)
        assert [state.tasks[f.key].runs for f in blocks] == [1] * BLOCKS  # nothing recomputed
        lost = [e for e in state.events if e["kind"] == "key-lost"]
        assert len(lost) == lost_before, lost[-5:]
        assert dict(state.restarts_by_name) == {}  # no receiver hit its memory guard
        assert cluster.oom_kills() == 0
        events_before = len(state.events)
        assert client.gather(client.map(digest, blocks)) == expected
        recomputed = sum(state.tasks[f.key].runs - 1 for f in blocks)
        assert recomputed == 0, (recomputed, state.events[events_before:][-20:],
                                 dict(state.restarts_by_name), cluster.oom_kills())
