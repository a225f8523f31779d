"""Graceful retirement of a worker holding ~1 GiB of unique data, memkube vs dask.distributed.

Three workers x one thread, 512 MB memory limit each, spilling to a directory under the
system temp dir. ``--gib`` GiB (default 1) of 16 MiB random float64 chunks per worker are
held (3 GiB in a pool of 1.5 GB: most of it is spilled), then the worker holding the most
unique bytes is retired (memkube ``Client.retire_workers(names=...)``, dask
``Client.retire_workers(workers=..., close_workers=True)``) and the call is timed. Then
every chunk is checked (a fingerprint computed on the workers, against the one computed
before the retirement). For memkube the run also reports what the scheduler counted:
keys recomputed (tasks run twice), memory restarts of any worker; for both, whether the
retired worker is gone and every result is right.

Reports, never asserts:

    .venv/bin/python bench/retire_bench.py [--quick] [--gib G] [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import GiB, MiB

CHUNK = 16 * MiB
WORKERS = 3
MEMORY_LIMIT = "512MB"


def make_chunk(i: int, nbytes: int) -> Any:
    import numpy as np

    return np.random.default_rng(i).random(nbytes // 8)


def fingerprint(a: Any) -> float:
    return float(a[::4096].sum())


def _within(condition: Any, timeout: float) -> bool:
    try:
        benchlib.wait_until(condition, timeout)
    except TimeoutError:
        return False
    return True


def measure_memkube(n_chunks: int, spill: Path) -> dict[str, Any]:
    import memkube

    with memkube.LocalCluster(n_workers=WORKERS, threads_per_worker=1,
                              memory_limit=MEMORY_LIMIT, log_level="ERROR",
                              worker_args=["--spill-dir", str(spill)]) as cluster, \
            memkube.Client(cluster) as client:
        state = cluster.scheduler.state
        chunks = client.map(make_chunk, range(n_chunks), [CHUNK] * n_chunks)
        memkube.wait(chunks, timeout=600)
        before = client.gather(client.map(fingerprint, chunks))
        time.sleep(1.0)  # heartbeats: the scheduler's memory figures are current
        fullest = max(state.workers.values(), key=state.unique_bytes)
        unique = state.unique_bytes(fullest)
        spilled = int(fullest.memory.get("spilled", 0))
        start = time.perf_counter()
        error = ""
        try:
            client.retire_workers(names=[fullest.name])
        except memkube.RetireError as exc:
            error = str(exc)
        seconds = time.perf_counter() - start
        gone = _within(lambda: fullest.name not in cluster.worker_pids(), 30)
        after = client.gather(client.map(fingerprint, chunks))
        return {"system": "memkube", "retire_s": None if error else seconds, "error": error,
                "unique_bytes": unique, "spilled_bytes": spilled,
                "recomputed": sum(1 for f in chunks if state.tasks[f.key].runs > 1),
                "memory_restarts": sum(state.restarts_by_name.values()),
                "gone": gone and len(cluster.worker_pids()) == WORKERS - 1,
                "correct": after == before}


def measure_dask(n_chunks: int, spill: Path) -> dict[str, Any]:
    import distributed

    with benchlib.dask_pool(WORKERS, memory_limit=MEMORY_LIMIT,
                            local_directory=spill) as (client, _workers):
        chunks = client.map(make_chunk, range(n_chunks), [CHUNK] * n_chunks)
        distributed.wait(chunks, timeout=600)
        before = client.gather(client.map(fingerprint, chunks))
        who_has = client.who_has(chunks)
        nbytes = client.nbytes([f.key for f in chunks], summary=False)
        per_worker: dict[str, int] = {}
        for key, holders in who_has.items():
            if len(holders) == 1:
                per_worker[holders[0]] = per_worker.get(holders[0], 0) + nbytes[key]
        address = max(per_worker, key=per_worker.__getitem__)
        start = time.perf_counter()
        error = ""
        try:
            client.retire_workers(workers=[address], close_workers=True)
        except Exception as exc:  # noqa: BLE001 - a figure, whatever dask raised
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        gone = _within(lambda: address not in client.scheduler_info()["workers"], 30)
        try:
            after = client.gather(client.map(fingerprint, chunks))
        except Exception as exc:  # noqa: BLE001 - lost data is a figure here
            after, error = None, error or f"{type(exc).__name__}: {exc}"
        return {"system": "dask", "retire_s": None if error else seconds, "error": error,
                "unique_bytes": per_worker[address], "spilled_bytes": None,
                "recomputed": None, "memory_restarts": None,
                "gone": gone, "correct": after == before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.25 GiB per worker")
    parser.add_argument("--gib", type=float, default=None, help="GiB held per worker")
    parser.add_argument("--repeats", type=int, default=1, help="runs per system (median)")
    parser.add_argument("--no-dask", action="store_true", help="memkube alone")
    args = parser.parse_args()
    gib = args.gib or (0.25 if args.quick else 1.0)
    n_chunks = int(gib * GiB * WORKERS) // CHUNK
    systems = ("memkube",) if args.no_dask else ("memkube", "dask")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    load = benchlib.load_average()
    for i in range(args.repeats):
        for system in systems if i % 2 == 0 else systems[::-1]:
            with tempfile.TemporaryDirectory(prefix=f"retire-bench-{system}-") as spill:
                measure = measure_memkube if system == "memkube" else measure_dask
                r = measure(n_chunks, Path(spill))
            runs[system].append(r)
            print(f"{system}: retired a worker holding {r['unique_bytes'] / MiB:.0f} MiB of "
                  f"unique data in {benchlib.fmt(r['retire_s'])} s; {r}", flush=True)
    med = {s: benchlib.median([r["retire_s"] for r in rs if r["retire_s"] is not None])
           if any(r["retire_s"] is not None for r in rs) else None for s, rs in runs.items()}
    rows = [{"figure": "retire (s)", "memkube": med.get("memkube"), "dask": med.get("dask"),
             "ratio": benchlib.ratio(med.get("memkube"), med.get("dask"))}]
    for field in ("unique_bytes", "recomputed", "memory_restarts", "gone", "correct"):
        rows.append({"figure": field, **{s: rs[-1][field] for s, rs in runs.items()}})
    benchlib.print_table(
        f"Retirement: {WORKERS} workers x {MEMORY_LIMIT}, {gib:g} GiB of {CHUNK // MiB} MiB "
        f"chunks per worker (load before: {load})", rows, ["figure", *systems, "ratio"])
    benchlib.write_json("retire", {"machine": benchlib.machine(), "gib_per_worker": gib,
                                   "runs": runs})


if __name__ == "__main__":
    main()
