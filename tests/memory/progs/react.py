"""Run inside a memory-limited cgroup: start a WorkerMemory whose poll is 30 s, allocate
past the pause threshold, and report how fast the monitor paused and resumed (kernel events
must have woken it). Prints JSON on stdout.

Usage: react.py LIMIT_BYTES ALLOCATE_BYTES
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time

import numpy as np
from memkube.memory import MemoryConfig, WorkerMemory


async def main(limit: int, allocate: int) -> None:
    base = MemoryConfig.from_options(limit=str(limit), terminate="none", env={})
    memory = WorkerMemory(dataclasses.replace(base, monitor_interval=30.0))
    paused, resumed = asyncio.Event(), asyncio.Event()
    await memory.start(on_pause=lambda r: paused.set(), on_resume=lambda r: resumed.set())
    await asyncio.sleep(0)  # let the monitor take its first reading and start waiting
    start = time.perf_counter()
    ballast = await asyncio.to_thread(np.ones, allocate // 8)
    allocated = time.perf_counter()
    await asyncio.wait_for(paused.wait(), 10)
    pause_latency = time.perf_counter() - allocated
    del ballast
    freed = time.perf_counter()
    await asyncio.wait_for(resumed.wait(), 10)
    resume_latency = time.perf_counter() - freed
    sources = memory._events.sources if memory._events else []
    kernel_events = memory.kernel_events
    await memory.close()
    print(
        json.dumps(
            {
                "allocate_seconds": allocated - start,
                "pause_latency": pause_latency,
                "resume_latency": resume_latency,
                "kernel_events": kernel_events,
                "sources": sources,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
