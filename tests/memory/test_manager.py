"""WorkerMemory in this process: spill directory, figures, can_fit and the monitor.

Memory readings here are real (psutil RSS); limits are set relative to this process's RSS so
that allocating a known amount crosses a threshold. Cgroups are ignored in this file.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import psutil
import pytest
from memkube import serialize
from memkube.memory import MemoryConfig, WorkerMemory
from memkube.memory.manager import MemoryFigures
from memkube.memory.policy import Pause, Resume, Spill

MiB = 1 << 20


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def config(tmp_path: Path, limit: int | None, **thresholds: float | None) -> MemoryConfig:
    base = MemoryConfig.from_options(
        limit=str(limit) if limit else "none", spill_dir=str(tmp_path), env={}
    )
    return dataclasses.replace(
        base,
        thresholds=dataclasses.replace(base.thresholds, **thresholds),
        monitor_interval=0.02,
    )


async def test_spill_directory_lifecycle_and_data(tmp_path: Path) -> None:
    memory = WorkerMemory(config(tmp_path, 64 * MiB), cgroup=False)
    assert memory.spill_dir.parent == tmp_path and memory.spill_dir.is_dir()
    array = np.random.default_rng(0).random(2 * MiB)  # 16 MiB: over the 38 MiB target twice
    for i in range(4):
        await asyncio.to_thread(memory.data.__setitem__, f"a{i}", array + i)
    assert any(memory.spill_dir.iterdir())
    frames = await asyncio.to_thread(memory.get_frames, "a0")
    np.testing.assert_array_equal(serialize.loads(frames), array)
    got = await asyncio.to_thread(memory.data.__getitem__, "a0")
    np.testing.assert_array_equal(got, array)
    await memory.close()
    assert not memory.spill_dir.exists() and list(tmp_path.iterdir()) == []


async def test_figures_follow_the_seam(tmp_path: Path) -> None:
    memory = WorkerMemory(config(tmp_path, 64 * MiB), cgroup=False)
    memory.data["x"] = b"x" * MiB
    figures = memory.figures()
    assert set(figures) == set(MemoryFigures.__annotations__)
    assert figures["limit"] == 64 * MiB and figures["managed"] >= MiB
    assert figures["unmanaged"] == max(0, figures["process"] - figures["managed"])
    assert figures["state"] == "normal" and figures["paused"] is False
    assert figures["cgroup_usage"] is None
    assert figures["thresholds"] == {"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}
    await memory.close()


async def test_can_fit_counts_what_spilling_can_free(tmp_path: Path) -> None:
    limit = 4 * rss()
    memory = WorkerMemory(config(tmp_path, limit, target=None, spill=None), cgroup=False)
    assert memory.can_fit(10 * MiB)
    assert not memory.can_fit(limit)
    memory.data["held"] = np.ones(int(0.4 * limit) // 8)
    room = int(0.8 * limit) - rss()  # what is left under pause if nothing were spilled
    assert room < 0.8 * limit - 0.4 * limit
    # the held value can be spilled, so a task needing more than the room still fits
    assert memory.can_fit(room + int(0.2 * limit))
    memory.data.spill_full = True  # ... unless the spill store cannot take it
    assert not memory.can_fit(room + int(0.2 * limit))
    await memory.close()


async def test_no_limit_always_fits_and_never_acts(tmp_path: Path) -> None:
    memory = WorkerMemory(config(tmp_path, None), cgroup=False)
    assert memory.can_fit(1 << 50)
    assert await memory.check_now() == []
    await memory.close()


async def test_check_now_spills_managed_data_above_the_spill_threshold(tmp_path: Path) -> None:
    base = rss()
    limit = int(base / 0.5)
    memory = WorkerMemory(
        config(tmp_path, limit, target=0.55, pause=None, terminate=None), cgroup=False
    )
    memory.data.target = None  # insertions do not spill: only the monitor does here
    memory.data["data"] = np.ones(int(0.3 * limit) // 8)  # process now ~80%
    actions = await memory.check_now()
    assert any(isinstance(a, Spill) for a in actions)
    figures = memory.figures()
    assert figures["spilled"] > 0 and figures["spill_count"] == 1
    assert figures["managed"] == 0
    await memory.close()


async def test_monitor_pauses_and_resumes_on_process_memory(tmp_path: Path) -> None:
    base = rss()
    limit = int(base / 0.5)
    memory = WorkerMemory(config(tmp_path, limit, terminate=None), cgroup=False)
    paused, resumed = asyncio.Event(), asyncio.Event()
    reasons: list[str] = []

    async def on_pause(reason: str) -> None:
        reasons.append(reason)
        paused.set()

    await memory.start(on_pause=on_pause, on_resume=lambda reason: resumed.set())
    ballast = np.ones(int(0.35 * limit) // 8)  # unmanaged: spilling cannot free it
    await asyncio.wait_for(paused.wait(), 5)
    assert memory.paused and "pause threshold 80%" in reasons[0]
    assert memory.figures()["state"] == "paused"
    assert not memory.can_fit(int(0.1 * limit))
    del ballast
    await asyncio.wait_for(resumed.wait(), 5)
    assert not memory.paused
    await memory.close()


async def test_terminate_is_called_once(tmp_path: Path) -> None:
    limit = int(rss() / 0.97)
    memory = WorkerMemory(config(tmp_path, max(limit, 17 * MiB)), cgroup=False)
    calls: list[str] = []
    done = asyncio.Event()

    async def on_terminate(reason: str) -> None:
        calls.append(reason)
        done.set()

    await memory.start(on_terminate=on_terminate)
    await asyncio.wait_for(done.wait(), 5)
    assert await memory.check_now() == []  # terminated: nothing more
    assert len(calls) == 1 and "terminate threshold 95%" in calls[0]
    with pytest.raises(RuntimeError, match="already running"):
        await memory.start()
    await memory.close()


async def test_a_failing_callback_does_not_stop_the_monitor(tmp_path: Path) -> None:
    base = rss()
    limit = int(base / 0.5)
    memory = WorkerMemory(config(tmp_path, limit, terminate=None), cgroup=False)
    paused, resumed = asyncio.Event(), asyncio.Event()

    def on_pause(reason: str) -> None:
        paused.set()
        raise RuntimeError("the worker's callback broke")

    await memory.start(on_pause=on_pause, on_resume=lambda reason: resumed.set())
    ballast = np.ones(int(0.35 * limit) // 8)
    await asyncio.wait_for(paused.wait(), 5)
    del ballast
    await asyncio.wait_for(resumed.wait(), 5)  # the monitor lived on after the exception
    await memory.close()
    await memory.close()  # twice is harmless


async def test_a_full_spill_disk_pauses_the_worker_and_loses_nothing(
    tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # only the managed target acts here (process thresholds off): 38 MiB in memory at most,
    # 16 MiB of disk, 64 MiB of values
    memory = WorkerMemory(
        config(tmpfs, 64 * MiB, spill=None, pause=None, terminate=None), cgroup=False
    )
    rng = np.random.default_rng(3)
    arrays = [rng.random(MiB // 2) for _ in range(16)]  # 4 MiB each, incompressible
    for i, array in enumerate(arrays):
        await asyncio.to_thread(memory.data.__setitem__, f"a{i}", array)
    actions = await memory.check_now()
    assert any(isinstance(a, Pause) and "spill store full" in a.reason for a in actions)
    assert memory.paused and memory.figures()["spill_full"]
    assert [r for r in caplog.records if "spill store full" in r.getMessage()][:1]
    for i, array in enumerate(arrays):
        np.testing.assert_array_equal(
            await asyncio.to_thread(memory.data.__getitem__, f"a{i}"), array
        )
    for i in range(8):  # the scheduler frees half: room again, the worker resumes
        await asyncio.to_thread(memory.data.__delitem__, f"a{i}")
    memory.policy.resume_after = 0  # (the policy's hysteresis in time is tested on its own)
    actions = await memory.check_now()
    assert not memory.paused and any(isinstance(a, Resume) for a in actions)
    await memory.close()
    assert list(tmpfs.iterdir()) == []
