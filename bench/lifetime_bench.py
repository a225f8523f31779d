"""Data lifetime, memkube vs dask.distributed (issue 4).

Two workers x one thread, 1 GiB memory limit each, both systems in turn.

* release: build ``--release-gib`` (default 2) GiB of results (32 MiB random float64
  chunks; part of them spill), ``del`` the futures, and time until the workers' memory and
  disk are back: the RSS of the worker process trees within 128 MiB of what it was before
  the data existed, and no spill bytes left in the spill directory. Both are external
  effects that no event announces, so they are polled every 20 ms.
* recovery: results of tasks that each cost ``--task-cost`` seconds are held, one worker
  is SIGKILLed (its supervisor restarts it: LocalCluster for memkube, the nanny for dask),
  and the time from the kill until a ``gather`` of every result returns (checked against
  the values before the kill) is measured with replication 2 and with recomputation:
  memkube ``LocalCluster(replication_factor=2)`` vs ``=1``; dask ``client.replicate(n=2)``
  vs nothing. For memkube replication 2 the time until every key has two copies again is
  reported too.

* gather: 1 GiB (``--quick``: 0.25) of 32 MiB results held by the two workers, one
  ``gather`` into this process: memkube as it chooses (straight from the workers here),
  memkube with the workers unreachable for the client (through the scheduler, as behind a
  port-forward), dask, and Ray (``ray_peer.py``: one ``ray.get``) in two shapes: with the
  data on two other Ray nodes of this machine (``gather-nodes``: every byte crosses a
  socket, as for the others; the figure compared), and on one node (the driver maps its
  shared-memory store, no byte crosses a socket; shown for completeness).

Not covered: memory pressure during recovery, retirement (graceful scale-down).

    .venv/bin/python bench/lifetime_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import raylib
from benchlib import GiB, MiB

CHUNK = 32 * MiB
RSS_SLACK = 128 * MiB
MEMORY_LIMIT = "1GiB"


def make_chunk(i: int, nbytes: int, cost: float = 0.0) -> Any:
    import numpy as np

    if cost:
        time.sleep(cost)  # stands for computation that a recovery must redo
    return np.random.default_rng(i).random(nbytes // 8)


def fingerprint(a: Any) -> float:
    return float(a[:1024].sum())


# ---------------------------------------------------------------------- pools

@contextmanager
def memkube_pool(spill_dir: Path, replication: int = 1) -> Iterator[tuple[Any, Any]]:
    """Client, and a callable giving the worker pids."""
    import memkube

    with memkube.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=MEMORY_LIMIT,
                              replication_factor=replication,
                              worker_args=["--spill-dir", str(spill_dir)]) as cluster, \
            memkube.Client(cluster) as client:
        yield client, lambda: list(cluster.worker_pids().values())


# dask's active memory manager drops replicas made by client.replicate within seconds
# (ReduceReplicas); off, so that the replicated case keeps what it asked for.
DASK_KEEP_REPLICAS = {"distributed.scheduler.active-memory-manager.start": False}


@contextmanager
def dask_pool(spill_dir: Path) -> Iterator[tuple[Any, Any]]:
    with benchlib.dask_pool(2, memory_limit=MEMORY_LIMIT, local_directory=spill_dir,
                            scheduler_config=DASK_KEEP_REPLICAS) as (client, workers):
        yield client, lambda: [w.proc.pid for w in workers]


def pool(system: str, spill_dir: Path, replication: int = 1) -> Any:
    if system == "memkube":
        return memkube_pool(spill_dir, replication)
    return dask_pool(spill_dir)


def wait_all(system: str, futures: list[Any], timeout: float) -> None:
    if system == "memkube":
        import memkube

        memkube.wait(futures, timeout=timeout)
    else:
        import distributed

        distributed.wait(futures, timeout=timeout)


# ---------------------------------------------------------------------- gather

def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_gather(system: str, n_chunks: int, timeout: float, *,
                   through_scheduler: bool = False) -> dict[str, Any]:
    """Seconds for one ``gather`` of ``n_chunks`` results held by two workers, into this
    process. ``through_scheduler``: memkube with its workers made unreachable for the client
    (its address seam), as behind a port-forward to the scheduler alone."""
    with tempfile.TemporaryDirectory(prefix=f"{system}-gather-") as spill, \
            pool(system, Path(spill)) as (client, _pids):
        if through_scheduler:
            bogus = f"tcp://127.0.0.1:{_closed_port()}"
            client.routes.resolve = lambda address: bogus
        warm = client.map(make_chunk, range(10**6, 10**6 + 2), nbytes=MiB)
        client.gather(warm)  # connections (and the client's reachability probes) made
        futures = client.map(make_chunk, range(n_chunks), nbytes=CHUNK)
        wait_all(system, futures, timeout)
        start = time.perf_counter()
        values = client.gather(futures)
        elapsed = time.perf_counter() - start
        check = sum(fingerprint(v) for v in values)
        out = {"system": system, "through_scheduler": through_scheduler, "gather_s": elapsed,
               "nbytes": sum(v.nbytes for v in values), "check": check}
        if system == "memkube":
            out["fallback_keys"] = client.routes.fallback_keys
        return out


# ---------------------------------------------------------------------- release

def measure_release(system: str, n_chunks: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"{system}-life-") as tmp, \
            pool(system, Path(tmp)) as (client, pids):
        spill_dir = Path(tmp)
        warm = client.map(make_chunk, range(2), nbytes=MiB)  # imports numpy in the workers
        wait_all(system, warm, timeout)
        del warm
        time.sleep(1.0)  # let the warm-up's release settle before the baseline
        baseline = benchlib.process_tree_rss(pids())
        futures = client.map(make_chunk, range(n_chunks), nbytes=CHUNK)
        wait_all(system, futures, timeout)
        held_rss = benchlib.process_tree_rss(pids())
        held_disk = benchlib.dir_size(spill_dir)

        def memory_back() -> bool:
            return benchlib.process_tree_rss(pids()) <= baseline + RSS_SLACK

        def disk_back() -> bool:
            return benchlib.dir_size(spill_dir) == 0

        start = time.perf_counter()
        del futures
        out: dict[str, Any] = {"system": system, "baseline_rss": baseline,
                               "held_rss": held_rss, "held_disk": held_disk}
        out["memory_s"], out["disk_s"] = _time_both(memory_back, disk_back, start, timeout)
        out["final_rss"] = benchlib.process_tree_rss(pids())
        out["final_disk"] = benchlib.dir_size(spill_dir)
    return out


def _time_both(a: Callable[[], bool], b: Callable[[], bool], start: float,
               timeout: float) -> tuple[float | None, float | None]:
    """Seconds since ``start`` until each condition first held (None: not within timeout)."""
    done: list[float | None] = [None, None]
    while None in done and time.perf_counter() - start < timeout:
        for i, cond in enumerate((a, b)):
            if done[i] is None and cond():
                done[i] = time.perf_counter() - start
        time.sleep(0.02)
    return done[0], done[1]


# ---------------------------------------------------------------------- recovery

def measure_recovery(system: str, replicated: bool, n_chunks: int, cost: float,
                     timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"{system}-rec-") as tmp, \
            pool(system, Path(tmp), replication=2 if replicated else 1) as (client, _pids):
        futures = client.map(make_chunk, range(n_chunks), nbytes=8 * MiB, cost=cost)
        wait_all(system, futures, timeout)
        if replicated and system == "dask":
            client.replicate(futures, n=2)
        if replicated:
            _wait_replicated(client, futures, timeout)
        start = time.perf_counter()
        before = [fingerprint(a) for a in client.gather(futures)]
        baseline = time.perf_counter() - start  # the gather itself, with nothing lost
        holders = _holders(client, futures)
        victim = _busiest_worker_pid(client, futures)
        start = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        values, failures = _gather_until_recovered(client, futures, start + timeout)
        recovered = time.perf_counter() - start
        out: dict[str, Any] = {"system": system, "replicated": replicated,
                               "recover_s": recovered, "gather_s_without_loss": baseline,
                               "gather_failures": failures, "holders_before": holders,
                               "correct": [fingerprint(a) for a in values] == before}
        del values
        if replicated and system == "memkube":
            try:
                _wait_replicated(client, futures, timeout)
                out["rereplicated_s"] = time.perf_counter() - start
            except TimeoutError:
                out["rereplicated_s"] = None
    return out


def _gather_until_recovered(client: Any, futures: list[Any],
                            deadline: float) -> tuple[list[Any], list[str]]:
    """``gather``, retried while it reports lost data (see FINDINGS.md: memkube's gather
    can raise DataLostError while the lost keys are still being recomputed)."""
    from memkube.errors import DataLostError

    failures: list[str] = []
    while True:
        try:
            return client.gather(futures), failures
        except DataLostError as exc:
            failures.append(str(exc))
            if time.perf_counter() > deadline:
                raise


def _busiest_worker_pid(client: Any, futures: list[Any]) -> int:
    """The pid of the worker holding most of the keys."""
    counts: dict[str, int] = {}
    for addresses in client.who_has(futures).values():
        for address in addresses:
            counts[address] = counts.get(address, 0) + 1
    address = max(counts, key=lambda a: counts[a])
    if hasattr(client, "run"):  # dask: ask the worker itself
        return int(client.run(os.getpid, workers=[address])[address])
    return int(client.scheduler_info()["workers"][address]["pid"])


def _holders(client: Any, futures: list[Any]) -> list[int]:
    who = client.who_has(futures)
    return sorted(len(v) for v in who.values())


def _wait_replicated(client: Any, futures: list[Any], timeout: float) -> None:
    benchlib.wait_until(lambda: min(_holders(client, futures)) >= 2, timeout, 0.05)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for repeated runs: medians of the timings, all samples kept."""
    out = dict(runs[0])
    for field in ("memory_s", "disk_s", "recover_s", "gather_s_without_loss",
                  "rereplicated_s"):
        values = [r[field] for r in runs if r.get(field) is not None]
        if field in out:
            out[field] = benchlib.median(values) if values else None
    if "correct" in out:
        out["correct"] = all(r["correct"] for r in runs)
        out["gather_failures"] = sum(len(r["gather_failures"]) for r in runs)
    out["samples"] = runs
    return out


# ---------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data (< 1 min)")
    parser.add_argument("--release-gib", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per figure, median reported (default 3, quick 1)")
    parser.add_argument("--task-cost", type=float, default=0.25,
                        help="seconds each recovery task takes (recomputation cost)")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out")
    args = parser.parse_args()
    n_release = int((args.release_gib or (0.5 if args.quick else 2)) * GiB) // CHUNK
    n_recover = 8 if args.quick else 24
    args.repeats = args.repeats or (1 if args.quick else 3)
    timeout = 60.0 if args.quick else 120.0
    load = benchlib.load_average()
    result: dict[str, Any] = {"machine": benchlib.machine(), "release_bytes": n_release * CHUNK,
                              "recover_chunks": n_recover, "task_cost": args.task_cost}

    samples: dict[str, list[dict[str, Any]]] = {"memkube": [], "dask": []}
    for i in range(args.repeats):
        for s in ("memkube", "dask") if i % 2 == 0 else ("dask", "memkube"):
            r = measure_release(s, n_release, timeout)
            samples[s].append(r)
            print(f"release {s}: memory {r['memory_s']} s, disk {r['disk_s']} s (held "
                  f"{r['held_rss'] / MiB:.0f} MiB RSS, {r['held_disk'] / MiB:.0f} MiB disk)",
                  flush=True)
    release = {s: _median_run(runs) for s, runs in samples.items()}
    recovery = {}
    for replicated in (True, False):
        for s in ("memkube", "dask"):
            runs = []
            for _ in range(args.repeats):
                r = measure_recovery(s, replicated, n_recover, args.task_cost, timeout)
                runs.append(r)
                print(f"recovery {s} replicated={replicated}: {r['recover_s']:.2f} s "
                      f"correct={r['correct']}", flush=True)
            recovery[(s, replicated)] = _median_run(runs)
    result["release"] = release
    result["recovery"] = [*recovery.values()]
    n_gather = int((0.25 if args.quick else 1.0) * GiB) // CHUNK
    gathers: dict[str, list[dict[str, Any]]] = {"memkube": [], "memkube-scheduler": [],
                                                "dask": []}
    for i in range(args.repeats):
        for name in ("memkube", "memkube-scheduler", "dask")[:: 1 if i % 2 == 0 else -1]:
            system = "dask" if name == "dask" else "memkube"
            g = measure_gather(system, n_gather, timeout,
                               through_scheduler=name == "memkube-scheduler")
            gathers[name].append(g)
            print(f"gather {name}: {g['gather_s']:.3f} s", flush=True)
    no_ray = "--no-ray" if args.no_ray else raylib.available()
    ray_gather = raylib.repeat("gather", args.repeats, no_ray, n=n_gather, chunk=CHUNK, cpus=2)
    ray_nodes = raylib.repeat("gather-nodes", args.repeats, no_ray, n=n_gather, chunk=CHUNK)
    result["gather"] = {**gathers, "ray": ray_gather, "ray-nodes": ray_nodes}
    g_med = {k: benchlib.median([g["gather_s"] for g in v]) for k, v in gathers.items()}
    g_med["ray"] = raylib.median_of(ray_nodes, "gather_s")
    g_med["ray-one-node"] = raylib.median_of(ray_gather, "gather_s")
    raylib.warn_unless_equal("gathered", *gathers.values(), ray_gather, ray_nodes)

    mk, dk = release["memkube"], release["dask"]
    rows: list[dict[str, Any]] = [
        {"figure": f"del {n_release * CHUNK / GiB:.1f} GiB -> memory released (s)",
         "memkube": mk["memory_s"], "dask": dk["memory_s"],
         "memkube/dask": benchlib.ratio(mk["memory_s"], dk["memory_s"])},
        {"figure": "  -> spill disk released (s)", "memkube": mk["disk_s"], "dask": dk["disk_s"],
         "memkube/dask": benchlib.ratio(mk["disk_s"], dk["disk_s"])},
        {"figure": "  spilled while held (MiB)", "memkube": mk["held_disk"] / MiB,
         "dask": dk["held_disk"] / MiB, "memkube/dask": None},
    ]
    for replicated, label in ((True, "replication 2"), (False, "recomputation")):
        a, b = recovery[("memkube", replicated)], recovery[("dask", replicated)]
        rows.append({"figure": f"SIGKILL -> all {n_recover} results back, {label} (s)",
                     "memkube": a["recover_s"], "dask": b["recover_s"],
                     "memkube/dask": benchlib.ratio(a["recover_s"], b["recover_s"])})
        rows.append({"figure": "  values correct (every run)", "memkube": a["correct"],
                     "dask": b["correct"], "memkube/dask": None})
        rows.append({"figure": "  gather raised DataLostError first (times, all runs)",
                     "memkube": a["gather_failures"], "dask": b["gather_failures"],
                     "memkube/dask": None})
        rows.append({"figure": "  (same gather with nothing lost, s)",
                     "memkube": a["gather_s_without_loss"], "dask": b["gather_s_without_loss"],
                     "memkube/dask": benchlib.ratio(a["gather_s_without_loss"],
                                                    b["gather_s_without_loss"])})
    rows.append({"figure": "  memkube: 2 copies of every key again (s)",
                 "memkube": recovery[("memkube", True)].get("rereplicated_s"), "dask": None,
                 "memkube/dask": None})
    size = f"{n_gather * CHUNK / GiB:.2f} GiB"
    for label, key in ((f"gather {size} into the client (s)", "memkube"),
                       ("  the same through the scheduler (s)", "memkube-scheduler")):
        rows.append({"figure": label, "memkube": g_med[key], "dask": g_med["dask"],
                     "ray": g_med["ray"], "memkube/dask": benchlib.ratio(g_med[key],
                                                                         g_med["dask"]),
                     "memkube/ray": benchlib.ratio(g_med[key], g_med["ray"])})
    rows.append({"figure": "  Ray on one node: the driver maps its store, no socket (s)",
                 "memkube": g_med["memkube"], "ray": g_med["ray-one-node"],
                 "memkube/ray": benchlib.ratio(g_med["memkube"], g_med["ray-one-node"])})
    result["table"] = rows
    benchlib.print_table("lifetime: 2 workers x 1 thread, 1 GiB each, median of "
                         f"{args.repeats}; load before {load}, after "
                         f"{benchlib.load_average()}", rows,
                         ["figure", "memkube", "dask", "ray", "memkube/dask", "memkube/ray"])
    if no_ray is not None:
        print(f"ray: not run ({no_ray})")
    benchlib.write_json("lifetime", result)


if __name__ == "__main__":
    main()
