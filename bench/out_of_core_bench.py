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
same spill directory, same run).

Ray is the third column (``ray_peer.py``: object store memory = the same limit, spilling to
the same spill root; not in a cgroup, see there). The *physical limit*, same run: the raw
O_DIRECT write and read of the total bytes (``benchlib.raw_disk``) plus the compute alone
(``make_chunk`` and ``chunk_sum`` of every chunk in this process, nothing kept, nothing
spilled); wall times are also given as a multiple of it. Not covered: several workers,
transfer between workers.

    .venv/bin/python bench/out_of_core_bench.py [--quick] [--spill-dir DIR] [--no-ray]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import raylib
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


def compute_alone(n_chunks: int, kind: str) -> float:
    """Seconds to build and sum every chunk here, one at a time: the work without spilling."""
    start = time.perf_counter()
    for i in range(n_chunks):
        chunk_sum(make_chunk(i, CHUNK, kind))
    return time.perf_counter() - start


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
                   spill_busy_seconds=mem.get("spill_busy_seconds"),
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
    # memkube writes several values at once: the wall time with a write in flight counts
    seconds = run.get("spill_busy_seconds") or run["spill_seconds"] or None
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
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out")
    args = parser.parse_args()
    from memkube.memory.child import child_cgroup_unavailable_reason

    reason = child_cgroup_unavailable_reason()
    if reason is not None:
        sys.exit(f"needs a writable memory cgroup: {reason}")
    total = int((args.total or (1 if args.quick else 3)) * GiB)
    n_chunks = total // CHUNK
    nbytes = n_chunks * CHUNK
    timeout = 60.0 if args.quick else 150.0
    kinds = args.kinds.split(",")
    load = benchlib.load_average()
    result: dict[str, Any] = {"machine": benchlib.machine(), "limit": LIMIT, "load_before": load,
                              "overhead": OVERHEAD, "chunk": CHUNK, "total": nbytes}
    raw_w, raw_r = benchlib.raw_disk(args.spill_dir, nbytes)
    compute = {kind: compute_alone(n_chunks, kind) for kind in kinds}
    physical = {kind: nbytes / raw_w + nbytes / raw_r + compute[kind] for kind in kinds}
    result.update(raw_disk_write_bytes_per_s=raw_w, raw_disk_read_bytes_per_s=raw_r,
                  compute_alone_s=compute, physical_limit_s=physical)
    print(f"load {load}; raw disk (O_DIRECT, {nbytes / GiB:.1f} GiB): write {raw_w / MiB:,.0f} "
          f"MiB/s, read {raw_r / MiB:,.0f} MiB/s; compute alone "
          + ", ".join(f"{k} {v:.2f}s" for k, v in compute.items()), flush=True)
    no_ray = "--no-ray" if args.no_ray else raylib.available()
    runs: list[dict[str, Any]] = []
    for kind in kinds:
        for system in ("memkube", "dask"):
            run = summarize(measure(system, kind, n_chunks, args.spill_dir, timeout), raw_w)
            runs.append(run)
            print(f"{system} {kind}: completed={run['completed']} wall={run['wall_s']:.1f}s "
                  f"error={run['error']}", flush=True)
        if no_ray is None:
            spill_dir = Path(tempfile.mkdtemp(prefix="ray-spill-", dir=args.spill_dir))
            try:
                ray = raylib.run("ooc", n=n_chunks, chunk=CHUNK, kind=kind, limit=LIMIT,
                                 spill_dir=str(spill_dir), timeout=timeout)
            finally:
                shutil.rmtree(spill_dir, ignore_errors=True)
            ray.update(system="ray", kind=kind)
            runs.append(ray)
            print(f"ray {kind}: {ray}", flush=True)
    result["runs"] = runs

    rows = []
    for kind in kinds:
        mk = next(r for r in runs if r["system"] == "memkube" and r["kind"] == kind)
        dk = next(r for r in runs if r["system"] == "dask" and r["kind"] == kind)
        ry = next((r for r in runs if r["system"] == "ray" and r["kind"] == kind), {})
        ray_ok = bool(ry) and "error" not in ry
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
            c = ry.get(field) if ray_ok else None
            if field == "spill_bytes":
                a, b = mk["spill_bytes"] / MiB, dk["spill_bytes"] / MiB
                c = ry.get("spilled_mib") if ray_ok else None
            if field == "completed" and ry:
                c = ray_ok
            rows.append({"variant": kind, "figure": label, "memkube": a, "dask": b, "ray": c,
                         "memkube/dask": benchlib.ratio(a, b) if use_ratio else None,
                         "memkube/ray": benchlib.ratio(a, c) if use_ratio and c else None})
        limit = physical[kind]
        rows.append({"variant": kind, "figure": "wall time / physical limit "
                     f"({limit:.2f} s = write {nbytes / raw_w:.2f} + read {nbytes / raw_r:.2f}"
                     f" + compute {compute[kind]:.2f})",
                     "memkube": mk["wall_s"] / limit, "dask": dk["wall_s"] / limit,
                     "ray": ry["wall_s"] / limit if ray_ok else None,
                     "memkube/dask": None, "memkube/ray": None})
        if both and abs(mk["total"] - dk["total"]) > 1e-6 * max(1.0, abs(dk["total"])):
            print(f"WARNING: sums differ for {kind}: {mk['total']} vs {dk['total']}")
        if ray_ok and abs(mk["total"] - ry["total"]) > 1e-6 * max(1.0, abs(ry["total"])):
            print(f"WARNING: sums differ for {kind}: {mk['total']} vs ray {ry['total']}")
    result["table"] = rows
    benchlib.print_table(
        f"out of core: 1 worker, limit {LIMIT // MiB} MiB, cgroup {(LIMIT + OVERHEAD) // MiB} "
        f"MiB, {n_chunks} x {CHUNK // MiB} MiB; load before {load}, after "
        f"{benchlib.load_average()}", rows,
        ["variant", "figure", "memkube", "dask", "ray", "memkube/dask", "memkube/ray"])
    if no_ray is not None:
        print(f"ray: not run ({no_ray})")
    benchlib.write_json("out_of_core", result)


if __name__ == "__main__":
    main()
