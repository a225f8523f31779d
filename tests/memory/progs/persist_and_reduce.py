"""Run inside a memory-limited cgroup: persist many x the limit of random arrays in a
WorkerMemory, then reduce over them (a sum per chunk, compared with the sums taken when
they were made); print a JSON summary on stdout.

Usage: persist_and_reduce.py LIMIT TOTAL_BYTES CHUNK_BYTES SPILL_DIR
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np
from memkube.memory import MemoryConfig, WorkerMemory


async def main(limit: str, total: int, chunk: int, spill_dir: str) -> None:
    config = MemoryConfig.from_options(limit=limit, spill_dir=spill_dir, env={})
    memory = WorkerMemory(config)
    events: list[str] = []
    await memory.start(
        on_pause=lambda reason: events.append(f"pause: {reason}"),
        on_resume=lambda reason: events.append(f"resume: {reason}"),
        on_terminate=lambda reason: events.append(f"terminate: {reason}"),
    )
    rng = np.random.default_rng(42)
    n = total // chunk
    start = time.perf_counter()

    def persist() -> list[float]:
        written = []
        for i in range(n):
            array = rng.random(chunk // 8)  # incompressible float64
            written.append(float(array.sum()))
            memory.data[f"chunk-{i}"] = array
            del array
        return written

    def reduce() -> list[float]:
        return [float(memory.data[f"chunk-{i}"].sum()) for i in range(n)]

    written = await asyncio.to_thread(persist)
    persisted = time.perf_counter() - start
    read = await asyncio.to_thread(reduce)
    figures = memory.figures()
    await memory.close()
    print(
        json.dumps(
            {
                "written": written,
                "read": read,
                "persist_seconds": persisted,
                "seconds": time.perf_counter() - start,
                "figures": figures,
                "events": events,
                "kernel_events": memory.kernel_events,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
