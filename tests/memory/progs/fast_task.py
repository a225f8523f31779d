"""Run inside a memory-limited cgroup: fill a WorkerMemory to its target, then run a "task"
that allocates fast, and see who acts first. Prints one JSON line; on a memory restart the
process exits with 75 as the worker does (after printing what happened).

Usage: fast_task.py LIMIT_BYTES TASK_BYTES STEP_BYTES
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import numpy as np
from memkube.memory import MemoryConfig, WorkerMemory

EXIT_MEMORY_RESTART = 75


async def main(limit: int, task_bytes: int, step: int) -> None:
    config = MemoryConfig.from_options(limit=str(limit), env={})
    memory = WorkerMemory(config)
    outcome: dict[str, object] = {"paused": False, "spilled": 0}
    start = time.perf_counter()

    def on_pause(reason: str) -> None:
        outcome["paused"] = True

    def on_terminate(reason: str) -> None:
        outcome.update(
            outcome="terminate",
            reason=reason,
            seconds=time.perf_counter() - start,
            spilled=memory.data.spilled,
        )
        print(json.dumps(outcome), flush=True)
        memory.close_sync()
        os._exit(EXIT_MEMORY_RESTART)

    await memory.start(on_pause=on_pause, on_terminate=on_terminate)
    rng = np.random.default_rng(0)
    target = config.target_bytes or 0

    def fill() -> None:
        for i in range(target // (8 << 20)):
            memory.data[f"held-{i}"] = rng.random(1 << 20)  # 8 MiB each, up to the target

    def task() -> int:
        parts = [np.ones(step // 8) for _ in range(task_bytes // step)]
        return len(parts)

    await asyncio.to_thread(fill)
    start = time.perf_counter()
    await asyncio.to_thread(task)
    outcome.update(
        outcome="completed", seconds=time.perf_counter() - start, spilled=memory.data.spilled
    )
    await memory.close()
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
