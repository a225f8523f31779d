"""Out-of-core: persist more than fits, then reduce it, memkube vs dask.distributed (issue 3).

One worker, one thread, memory limit 512 MiB, the worker (for dask: nanny + worker) inside
a child memory cgroup of limit + overhead, as in a pod. The workload builds ``--total``
bytes of float64 in 32 MiB chunks on the worker (``map``), waits for all of them (they stay
referenced, so they must be held: in memory or spilled), then sums every chunk and gathers
the sums. Variants: ``random`` (incompressible) and ``zeros`` (compressible).

Reported per system and variant: completed (no error, no kernel OOM kill in the cgroup),
wall time, peak cgroup working set / cgroup limit, peak RSS / memory limit, spill bytes and
seconds as the worker accounts them, and spill write throughput as a fraction of this
disk's raw sequential write speed (a file of the same size written with O_DIRECT in the
same spill directory, same run). Not covered: several workers, transfer between workers.

    .venv/bin/python bench/out_of_core_bench.py [--quick] [--spill-dir DIR]
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import GiB, MiB

LIMIT = 512 * MiB
OVERHEAD = 256 * MiB
CHUNK = 32 * MiB


def make_chunk(i: int, nbytes: int, kind: str) -> Any:
    import numpy as np

    n = nbytes // 8
    if kind == "random":
        return np.random.default_rng(i).random(n)
    return np.zeros(n)


def chunk_sum(a: Any) -> float:
    return float(a.sum())


def raw_write_speed(directory: Path, nbytes: int) -> float:
    """Bytes/s of one sequential O_DIRECT write of ``nbytes`` (page cache bypassed), fsynced."""
    path = directory / "raw-write-test"
    block = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT requires
    block.write(os.urandom(CHUNK))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(nbytes // CHUNK):
            os.write(fd, block)
        os.fsync(fd)
        return nbytes / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
        block.close()


def run_workload(client: Any, wait: Any, n_chunks: int, kind: str, timeout: float) -> float:
    """The workload, identical for both systems; returns the sum of all chunks."""
    chunks = client.map(make_chunk, range(n_chunks), nbytes=CHUNK, kind=kind)
    wait(chunks, timeout=timeout)
    sums = client.map(chunk_sum, chunks)
    return float(sum(client.gather(sums)))


def measure(system: str, kind: str, n_chunks: int, spill_root: Path,
            timeout: float) -> dict[str, Any]:
    spill_dir = Path(tempfile.mkdtemp(prefix=f"{system}-", dir=spill_root))
    try:
        if system == "memkube":
            return _measure_memkube(kind, n_chunks, spill_dir, timeout)
        return _measure_dask(kind, n_chunks, spill_dir, timeout)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


def _measure_memkube(kind: str, n_chunks: int, spill_dir: Path,
                     timeout: float) -> dict[str, Any]:
    import memkube

    out: dict[str, Any] = {"system": "memkube", "kind": kind}
    with memkube.LocalCluster(n_workers=1, threads_per_worker=1, memory_limit=LIMIT,
                              cgroup=True, memory_overhead=OVERHEAD,
                              worker_args=["--spill-dir", str(spill_dir)]) as cluster, \
            memkube.Client(cluster) as client:
        (wp,) = cluster.workers.values()
        cgroup, pid = wp.cgroup, wp.proc.pid
        oom = benchlib.Sampler(cgroup.oom_kills)
        with benchlib.Sampler(cgroup.cgroup.working_set) as ws, \
                benchlib.Sampler(lambda: benchlib.process_tree_rss([pid])) as rss, oom:
            start = time.perf_counter()
            try:
                out["total"] = run_workload(client, memkube.wait, n_chunks, kind, timeout)
                out["error"] = None
            except Exception as exc:  # noqa: BLE001 - a failed run is a result, reported
                out["error"] = f"{type(exc).__name__}: {exc}"
            out["wall_s"] = time.perf_counter() - start
        (info,) = client.scheduler_info()["workers"].values()
        mem = info["memory"]
        out.update(peak_working_set=ws.peak, peak_rss=rss.peak, oom_kills=oom.peak,
                   restarts=sum(w.restarts for w in cluster.workers.values()),
                   spill_bytes=mem["spill_bytes"], spill_seconds=mem["spill_seconds"],
                   spill_count=mem["spill_count"], unspill_bytes=mem["unspill_bytes"],
                   unspill_seconds=mem["unspill_seconds"])
    return out


def _measure_dask(kind: str, n_chunks: int, spill_dir: Path, timeout: float) -> dict[str, Any]:
    import distributed

    out: dict[str, Any] = {"system": "dask", "kind": kind}
    with benchlib.dask_pool(1, memory_limit=f"{LIMIT // MiB}MiB", local_directory=spill_dir,
                            cgroup_limit=LIMIT + OVERHEAD) as (client, workers):
        (worker,) = workers
        cgroup = worker.cgroup
        oom = benchlib.Sampler(cgroup.oom_kills)
        with benchlib.Sampler(cgroup.cgroup.working_set) as ws, \
                benchlib.Sampler(lambda: benchlib.process_tree_rss([worker.proc.pid])) as rss, \
                oom:
            start = time.perf_counter()
            try:
                out["total"] = run_workload(client, distributed.wait, n_chunks, kind, timeout)
                out["error"] = None
            except Exception as exc:  # noqa: BLE001 - a failed run is a result, reported
                out["error"] = f"{type(exc).__name__}: {exc}"
            out["wall_s"] = time.perf_counter() - start
        spill = benchlib.dask_spill_figures(client)
        out.update(peak_working_set=ws.peak, peak_rss=rss.peak,
                   oom_kills=max(oom.peak, cgroup.oom_kills()),
                   spill_bytes=int(spill["spill_bytes"]), spill_seconds=spill["spill_seconds"],
                   spill_count=int(spill["spill_count"]),
                   unspill_bytes=int(spill["unspill_bytes"]),
                   unspill_seconds=spill["unspill_seconds"])
    return out


def summarize(run: dict[str, Any], raw_speed: float) -> dict[str, Any]:
    run["completed"] = run["error"] is None and run["oom_kills"] == 0
    run["working_set_over_cgroup_limit"] = run["peak_working_set"] / (LIMIT + OVERHEAD)
    run["rss_over_limit"] = run["peak_rss"] / LIMIT
    seconds = run["spill_seconds"] or None
    # bytes as stored per second spent spilling: a disk figure only for incompressible data
    speed = run["spill_bytes"] / seconds if seconds else None
    run["spill_write_bytes_per_s"] = speed
    run["spill_write_over_raw_disk"] = (speed / raw_speed
                                        if speed and run["kind"] == "random" else None)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 GiB instead of 3 GiB (< 1 min)")
    parser.add_argument("--total", type=float, default=None, help="GiB to persist")
    parser.add_argument("--spill-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where both systems spill and the raw disk test writes")
    parser.add_argument("--kinds", default="random,zeros", help="random, zeros or both")
    args = parser.parse_args()
    from memkube.memory.child import child_cgroup_unavailable_reason

    reason = child_cgroup_unavailable_reason()
    if reason is not None:
        sys.exit(f"needs a writable memory cgroup: {reason}")
    total = int((args.total or (1 if args.quick else 3)) * GiB)
    n_chunks = total // CHUNK
    timeout = 60.0 if args.quick else 150.0
    result: dict[str, Any] = {"machine": benchlib.machine(), "limit": LIMIT,
                              "overhead": OVERHEAD, "chunk": CHUNK, "total": n_chunks * CHUNK}
    raw = raw_write_speed(args.spill_dir, n_chunks * CHUNK)
    result["raw_disk_write_bytes_per_s"] = raw
    print(f"raw sequential write (O_DIRECT, {n_chunks * CHUNK / GiB:.1f} GiB): "
          f"{raw / MiB:,.0f} MiB/s", flush=True)
    runs: list[dict[str, Any]] = []
    for kind in args.kinds.split(","):
        for system in ("memkube", "dask"):
            run = summarize(measure(system, kind, n_chunks, args.spill_dir, timeout), raw)
            runs.append(run)
            print(f"{system} {kind}: completed={run['completed']} wall={run['wall_s']:.1f}s "
                  f"error={run['error']}", flush=True)
    result["runs"] = runs

    rows = []
    for kind in args.kinds.split(","):
        mk = next(r for r in runs if r["system"] == "memkube" and r["kind"] == kind)
        dk = next(r for r in runs if r["system"] == "dask" and r["kind"] == kind)
        both = mk["completed"] and dk["completed"]
        for label, field, use_ratio in [
            ("completed", "completed", False),
            ("kernel OOM kills in the cgroup", "oom_kills", False),
            ("wall time (s)", "wall_s", both),
            ("peak cgroup working set / cgroup limit", "working_set_over_cgroup_limit", True),
            ("peak RSS / memory limit", "rss_over_limit", True),
            ("written to spill files (MiB)", "spill_bytes", True),
            ("time spent spilling (s)", "spill_seconds", True),
            ("time spent unspilling (s)", "unspill_seconds", True),
            ("spill write throughput / raw disk", "spill_write_over_raw_disk", True),
        ]:
            a, b = mk.get(field), dk.get(field)
            if field == "spill_bytes":
                a, b = mk["spill_bytes"] / MiB, dk["spill_bytes"] / MiB
            rows.append({"variant": kind, "figure": label, "memkube": a, "dask": b,
                         "memkube/dask": benchlib.ratio(a, b) if use_ratio else None})
        if both and abs(mk["total"] - dk["total"]) > 1e-6 * max(1.0, abs(dk["total"])):
            print(f"WARNING: sums differ for {kind}: {mk['total']} vs {dk['total']}")
    result["table"] = rows
    benchlib.print_table(
        f"out of core: 1 worker, limit {LIMIT // MiB} MiB, cgroup {(LIMIT + OVERHEAD) // MiB} "
        f"MiB, {n_chunks} x {CHUNK // MiB} MiB", rows,
        ["variant", "figure", "memkube", "dask", "memkube/dask"])
    benchlib.write_json("out_of_core", result)


if __name__ == "__main__":
    main()
