"""Reading spilled inputs back ahead of the tasks that need them.

``WorkerMemory.prefetch`` against a real spill directory (the process thresholds off, so
only the managed target acts), and the worker's ``Prefetcher`` over its ready heap with a
recording memory.
"""

from __future__ import annotations

import heapq
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from memkube.errors import ConfigError
from memkube.memory import MemoryConfig, WorkerMemory
from memkube.worker.prefetch import Prefetcher

MiB = 1 << 20


def memory(tmp_path: Path, limit: int = 2048 * MiB) -> WorkerMemory:
    # the limit leaves room for this test process's own RSS, which can_fit counts
    config = MemoryConfig.from_options(limit=str(limit), spill_dir=str(tmp_path), spill=False,
                                       pause=False, terminate=False, env={})
    return WorkerMemory(config, cgroup=False)


def test_prefetch_reads_spilled_values_back_in_order(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    arrays = {f"a{i}": np.random.default_rng(i).random(MiB // 2) for i in range(8)}  # 4 MiB
    for key, array in arrays.items():
        mem.data[key] = array
    mem.data.spill_to(0)
    spilled = [k for k in arrays if not mem.data.in_memory(k)]
    assert spilled == list(arrays)
    wanted = {k: 4 * MiB for k in spilled[2:5]}
    assert mem.prefetch(wanted) == spilled[2:5]
    assert [k for k in arrays if mem.data.in_memory(k)] == spilled[2:5]
    for key in spilled[:3]:
        np.testing.assert_array_equal(mem.data[key], arrays[key])
    assert mem.prefetch({spilled[0]: 4 * MiB, "unknown": 1}) == []  # nothing to do
    mem.close_sync()


def test_prefetch_stops_at_what_does_not_fit(tmp_path: Path) -> None:
    mem = memory(tmp_path, limit=2048 * MiB)
    mem.data["big"] = np.random.default_rng(0).random(40 * MiB)  # 320 MiB > target / 4
    mem.data["small"] = np.zeros(10)
    mem.data.spill_to(0)
    assert not mem.data.in_memory("big") and not mem.data.in_memory("small")
    # priority order: nothing behind a value that did not fit is read ahead either
    assert mem.prefetch({"big": 320 * MiB, "small": 80}) == []
    assert mem.prefetch({"small": 80, "big": 320 * MiB}) == ["small"]
    mem.close_sync()


def test_concurrent_reads_of_one_spilled_value_share_one_read(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    mem.data["k"] = np.random.default_rng(0).random(MiB)
    mem.data.spill_to(0)
    before = mem.data.stats.unspill_count
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(mem.data["k"]))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mem.data.stats.unspill_count - before == 1
    assert all(r is results[0] for r in results)
    mem.close_sync()


@dataclass
class Task:
    who_has: dict[str, list[str]]
    nbytes: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False


class RecordingMemory:
    def __init__(self) -> None:
        self.asked: list[dict[str, int]] = []
        self.release = threading.Event()

    def prefetch(self, wanted: dict[str, int]) -> list[str]:
        self.asked.append(dict(wanted))
        assert self.release.wait(10)
        return list(wanted)


def test_prefetcher_asks_for_the_next_ready_tasks_inputs_one_job_at_a_time() -> None:
    mem = RecordingMemory()
    with ThreadPoolExecutor(1) as pool:
        pre = Prefetcher(mem, pool, depth=2)
        ready: list[tuple[tuple[int, ...], int, Task]] = []
        tasks = [Task({f"x{i}": [], "shared": []}, {f"x{i}": 10 * i, "shared": 5})
                 for i in range(4)]
        for seq, (prio, task) in enumerate(zip([3, 1, 2, 0], tasks, strict=True)):
            heapq.heappush(ready, ((prio,), seq, task))
        tasks[3].cancelled = True  # priority 0, but cancelled: skipped
        upcoming = [task for _, _, task in sorted(ready, key=lambda item: item[:2])]
        pre.ahead(upcoming)
        pre.ahead(upcoming)  # a job is running: no second one
        mem.release.set()
    assert mem.asked == [{"x1": 10, "shared": 5, "x2": 20}]
    assert pre.read == 3


def test_spill_pipeline_settings_are_checked() -> None:
    c = MemoryConfig.from_options(limit="1GiB", env={"MEMKUBE_SPILL_WRITE": "range",
                                                     "MEMKUBE_SPILL_WRITERS": "3"})
    assert (c.write_mode, c.writers) == ("range", 3)
    d = MemoryConfig.from_options(limit="1GiB", env={})
    assert (d.write_mode, d.writers) == ("direct", 2)
    with pytest.raises(ConfigError, match="spill-write"):
        MemoryConfig.from_options(limit="1GiB", env={"MEMKUBE_SPILL_WRITE": "fast"})
    with pytest.raises(ConfigError, match="spill-writers"):
        MemoryConfig.from_options(limit="1GiB", env={"MEMKUBE_SPILL_WRITERS": "0"})
