"""The main job: a local memory-limited pool works through data several times its memory.

Two worker processes with a 400 MiB limit each (inside a memory cgroup of limit + overhead
when this machine allows it, so the kernel enforces the limit exactly as in a pod) persist
2.5 GiB of incompressible random arrays, sum them, and check the answer against a local
computation. The summary says how much was spilled to disk and that no worker was killed.

Run: ``python examples/out_of_core.py [--gib 2.5] [--workers 2] [--limit 400MiB]``.
"""

from __future__ import annotations

import argparse
import time

import memkube
import numpy as np
from memkube.memory.child import child_cgroup_unavailable_reason

CHUNK = 32 * 2**20  # bytes per array


def make_chunk(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(CHUNK // 8)


def chunk_sum(x: np.ndarray) -> float:
    return float(x.sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.5, help="data to persist, GiB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", default="400MiB", help="memory limit per worker")
    args = parser.parse_args()

    nchunks = int(args.gib * 2**30 // CHUNK)
    why_not = child_cgroup_unavailable_reason()
    start = time.perf_counter()
    with memkube.LocalCluster(n_workers=args.workers, memory_limit=args.limit,
                              cgroup=why_not is None, log_level="ERROR") as cluster, \
            memkube.Client(cluster) as client:
        limit = cluster.memory_limit or 0
        print(f"pool: {args.workers} workers x {limit / 2**20:.0f} MiB "
              f"({'kernel-enforced by a memory cgroup of limit + overhead' if why_not is None else 'no cgroup: ' + why_not})")
        print(f"data: {nchunks} arrays x 32 MiB = {nchunks * CHUNK / 2**30:.2f} GiB "
              f"({nchunks * CHUNK / (limit * args.workers):.1f}x the pool's memory)")

        arrays = client.persist(client.map(make_chunk, range(nchunks)))
        sums = client.map(chunk_sum, arrays)
        total = client.submit(sum, sums).result()
        elapsed = time.perf_counter() - start

        finished_at = time.time()
        expected = sum(chunk_sum(make_chunk(i)) for i in range(nchunks))
        # Memory figures come with the workers' heartbeats (once a second): wait for ones
        # sent after the work finished.
        info = client.scheduler_info()
        while any(w["last_seen"] < finished_at for w in info["workers"].values()):
            time.sleep(0.1)
            info = client.scheduler_info()
        workers = info["workers"].values()
        spilled_total = sum(w["memory"]["spill_bytes"] for w in workers)
        on_disk = sum(w["memory"]["spilled"] for w in workers)
        restarts = sum(w["memory_restarts"] for w in workers)
        kernel_kills = cluster.oom_kills()
        client.unpersist(arrays)

    correct = abs(total - expected) <= 1e-6 * abs(expected)
    print(f"sum: {total:.6f} (expected {expected:.6f}) -> {'correct' if correct else 'WRONG'}")
    print(f"spilled to disk: {spilled_total / 2**30:.2f} GiB written, "
          f"{on_disk / 2**30:.2f} GiB on disk at the end")
    print(f"workers killed by the kernel (OOM): {kernel_kills}; memory restarts: {restarts}")
    print(f"time: {elapsed:.1f} s")
    ok = correct and kernel_kills == 0
    print("OK: the pool held several times its memory and the kernel killed no worker" if ok
          else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
