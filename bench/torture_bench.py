"""Torture: tasks that allocate fast, memkube vs dask.distributed in the same cgroup (issue 10).

One worker, ``--memory-limit 400MB``, inside a 700 MB memory cgroup (cgroup v1 here; for
dask the nanny and its worker, for memkube the memory guard and its worker). Workloads:

- ``temps-150``/``temps-250``: 1 GB of client-held results (125 x 8 MB), then 24 tasks that
  each build a 150/250 MB numpy temporary and return 8 MB; 1 thread;
- ``temps-150-2t``: the same 150 MB temporaries with 2 threads;
- ``huge-900``: one task that needs 900 MB at once (it cannot fit: the clear error, fast);
- variants: ``temps-100-3t`` (3 threads), ``temps-300`` (fits only after spilling
  everything), ``objs-150`` (temporaries of many small Python objects), ``huge-objs-900``
  (an impossible task made of small objects).

Per run: completed (no error, results right), kernel OOM kills (the cgroup's
``memory.oom_control``), worker restarts (distinct worker processes seen under the guard /
nanny, minus one), wall time. Nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import benchlib
import psutil

MB = 10**6
LIMIT = 400 * MB
CGROUP = 700 * MB
HELD = 125  # x 8 MB = 1 GB held by the client
RESULT = 8 * MB


@dataclass(frozen=True)
class Workload:
    name: str
    temp_mb: int
    threads: int = 1
    ntasks: int = 24
    held: int = HELD
    objects: bool = False  # temporaries of small Python objects instead of one array
    impossible: bool = False


WORKLOADS = [
    Workload("temps-150", 150),
    Workload("temps-250", 250),
    Workload("temps-150-2t", 150, threads=2),
    Workload("huge-900", 900, ntasks=1, held=0, impossible=True),
    Workload("temps-100-3t", 100, threads=3),
    Workload("temps-300", 300, ntasks=12),
    Workload("objs-150", 150, ntasks=12, objects=True),
    Workload("huge-objs-900", 900, ntasks=1, held=0, objects=True, impossible=True),
]


def held_chunk(i: int) -> Any:
    import numpy as np

    return np.random.default_rng(i).random(RESULT // 8)


def temp_task(i: int, temp_mb: int) -> Any:
    import numpy as np

    temp = np.random.default_rng(1000 + i).random(temp_mb * MB // 8)  # fast, all at once
    out = temp[: RESULT // 8] * 2.0
    del temp
    return out


def objects_task(i: int, temp_mb: int) -> Any:
    import numpy as np

    # ~36 bytes per int object (object + list slot): temp_mb of small objects, built fast
    temp = list(range(i, i + temp_mb * MB // 36))
    total = sum(temp[:1000])
    del temp
    return np.full(RESULT // 8, float(total))


def expected_sum(w: Workload, i: int) -> float:
    import numpy as np

    if w.objects:
        return float(sum(range(i, i + 1000))) * (RESULT // 8)
    rng = np.random.default_rng(1000 + i)
    return float((rng.random(RESULT // 8) * 2.0).sum())


def run_workload(client: Any, w: Workload, timeout: float) -> tuple[bool, float]:
    """(results right, seconds to build the held data). The held data stays referenced."""
    import numpy as np

    start = time.perf_counter()
    held = client.map(held_chunk, range(w.held)) if w.held else []
    for f in held:
        f.result(timeout=timeout)
    held_s = time.perf_counter() - start
    func = objects_task if w.objects else temp_task
    futures = client.map(func, range(w.ntasks), temp_mb=w.temp_mb)
    sums = [float(f.result(timeout=timeout)) for f in client.map(np.sum, futures)]
    ok = len(sums) == w.ntasks and all(
        abs(s - expected_sum(w, i)) <= 1e-6 * abs(expected_sum(w, i)) + 1e-9
        for i, s in enumerate(sums))
    del held
    return ok, held_s


class PidWatch(benchlib.Sampler):
    """Distinct worker processes seen under ``parent`` (the guard or the nanny)."""

    def __init__(self, parent: int, interval: float = 0.02) -> None:
        self.parent = parent
        self.seen: set[int] = set()
        super().__init__(self._count, interval)

    def _count(self) -> int:
        try:
            self.seen.update(c.pid for c in psutil.Process(self.parent).children())
        except psutil.Error:
            pass  # the parent is between workers, or gone
        return len(self.seen)

    @property
    def restarts(self) -> int:
        return max(0, len(self.seen) - 1)


def _measure(system: str, w: Workload, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system, "workload": w.name, "error": None}
    if system == "memkube":
        import memkube

        cm: Any = memkube.LocalCluster(
            n_workers=1, threads_per_worker=w.threads, memory_limit=LIMIT, cgroup=True,
            memory_overhead=CGROUP - LIMIT, log_level="ERROR")
        with cm as cluster, memkube.Client(cluster) as client:
            (wp,) = cluster.workers.values()
            cgroup, parent = wp.cgroup, wp.proc.pid
            out.update(_timed(client, w, timeout, cgroup, parent))
            out["oom_kills"] = max(out["oom_kills"], cgroup.oom_kills())
    else:
        with benchlib.dask_pool(1, nthreads=w.threads, memory_limit=f"{LIMIT}B",
                                cgroup_limit=CGROUP) as (client, workers):
            (worker,) = workers
            out.update(_timed(client, w, timeout, worker.cgroup, worker.proc.pid))
            out["oom_kills"] = max(out["oom_kills"], worker.oom_kills())
    return out


def _timed(client: Any, w: Workload, timeout: float, cgroup: Any, parent: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    oom = benchlib.Sampler(cgroup.oom_kills)
    with oom, PidWatch(parent) as pids:
        start = time.perf_counter()
        try:
            ok, out["held_s"] = run_workload(client, w, timeout)
            out["completed"] = ok
            if not ok:
                out["error"] = "wrong results"
        except Exception as exc:  # noqa: BLE001 - a failed run is a result, reported
            out["completed"] = False
            out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        out["wall_s"] = time.perf_counter() - start
        time.sleep(0.2)  # let the pid watch see a restart that the error raced
    out["oom_kills"] = oom.peak
    out["restarts"] = pids.restarts
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--systems", default="memkube,dask")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # its per-key warnings
    from memkube.memory.child import child_cgroup_unavailable_reason

    reason = child_cgroup_unavailable_reason()
    if reason is not None:
        sys.exit(f"needs a writable memory cgroup: {reason}")
    chosen = [w for w in WORKLOADS if not args.only or w.name in args.only.split(",")]
    systems = args.systems.split(",")
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for rep in range(args.repeats):
        for w in chosen:
            order = systems if rep % 2 == 0 else systems[::-1]
            for system in order:
                run = _measure(system, w, args.timeout)
                run["repeat"] = rep
                runs.append(run)
                print(f"[{rep}] {system:7s} {w.name:14s} completed={run['completed']!s:5s} "
                      f"oom={run['oom_kills']} restarts={run['restarts']} "
                      f"wall={run['wall_s']:.1f}s {run['error'] or ''}", flush=True)
    rows = []
    for w in chosen:
        row: dict[str, Any] = {"workload": w.name}
        walls = {}
        for system in systems:
            mine = [r for r in runs if r["system"] == system and r["workload"] == w.name]
            done = sum(r["completed"] for r in mine)
            row[f"{system} done"] = f"{done}/{len(mine)}"
            row[f"{system} oom"] = sum(r["oom_kills"] for r in mine)
            row[f"{system} restarts"] = sum(r["restarts"] for r in mine)
            walls[system] = benchlib.median([r["wall_s"] for r in mine])
            row[f"{system} wall s"] = walls[system]
        if "memkube" in walls and "dask" in walls:
            row["memkube/dask"] = benchlib.ratio(walls["memkube"], walls["dask"])
        rows.append(row)
    columns = ["workload"] + [f"{s} {c}" for s in systems
                              for c in ("done", "oom", "restarts", "wall s")] + ["memkube/dask"]
    benchlib.print_table(
        f"torture: 1 worker, limit {LIMIT // MB} MB, cgroup {CGROUP // MB} MB, "
        f"{args.repeats} runs (load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f})",
        rows, columns)
    benchlib.write_json("torture", {"machine": benchlib.machine(), "runs": runs,
                                    "table": rows, "load": [load_before, os.getloadavg()]})


if __name__ == "__main__":
    main()
