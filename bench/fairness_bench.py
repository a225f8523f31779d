"""Fairness between clients, memkube vs dask.distributed (issue 14, finding 15).

Two worker processes with one thread each. Client A submits a big graph (``map`` of N
short tasks, default 50,000); while it runs, client B does ``submit(...).result()`` one at
a time and the round trips are recorded (median, p90, max), with the same figures on an
idle pool for reference. Each system is measured alone, one after the other.

    .venv/bin/python bench/fairness_bench.py [--quick] [--tasks N] [--skip-dask]
    MEMKUBE_SRC=/path/to/other/worker_image ...   # e.g. the runtime before a fix
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import benchlib


def work(x: int) -> int:
    time.sleep(0.001)  # ~1 ms of "work", so 50,000 tasks keep two workers busy ~25 s
    return x


def inc(x: int) -> int:
    return x + 1


def round_trips(client: Any, count: int, offset: int, running: Any = None,
                timeout: float = 120.0) -> list[float]:
    """``count`` round trips (or, with ``running``, as many as fit while it is not done)."""
    times = []
    for i in range(offset, offset + count):
        if running is not None and running.done():
            break
        start = time.perf_counter()
        try:
            assert client.submit(inc, i, pure=False).result(timeout=timeout) == i + 1
        except TimeoutError:  # recorded as the timeout: the figure is "at least this"
            print(f"  a round trip timed out after {timeout:.0f} s", flush=True)
        times.append(time.perf_counter() - start)
    return times


def measure(make_clients: Any, n_tasks: int, n_rtt: int) -> dict[str, Any]:
    with make_clients() as (a, b):
        round_trips(b, 5, -100)
        a.gather(a.map(work, range(-200, 0)))
        idle = round_trips(b, n_rtt, 0)
        start = time.perf_counter()
        futures = a.map(work, range(n_tasks), pure=False)
        submitted = time.perf_counter() - start
        busy = round_trips(b, 10**9, 10**6, running=futures[-1])
        a.gather(futures)
        total = time.perf_counter() - start
        del futures
    return {"idle": idle, "busy": busy, "graph_seconds": total, "submit_seconds": submitted,
            "timeout_seconds": 120.0}


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median": benchlib.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))],
            "max": ordered[-1], "count": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 tasks, 20 round trips")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    n_tasks = args.tasks or (10_000 if args.quick else 50_000)
    n_rtt = 20 if args.quick else 50  # on the idle pool; during the graph: as many as fit

    import contextlib

    import memkube

    @contextlib.contextmanager
    def memkube_clients() -> Any:
        with memkube.LocalCluster(n_workers=2, threads_per_worker=1,
                                  memory_limit="1GiB") as mc, \
                memkube.Client(mc) as a, memkube.Client(mc) as b:
            yield a, b

    @contextlib.contextmanager
    def dask_clients() -> Any:
        import distributed

        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      memory_limit="1GiB", dashboard_address=None) as dc, \
                distributed.Client(dc) as a, distributed.Client(dc, set_as_default=False) as b:
            yield a, b

    result: dict[str, Any] = {"machine": benchlib.machine(), "tasks": n_tasks,
                              "runtime": benchlib.RUNTIME_SRC}
    systems = {"memkube": memkube_clients}
    if not args.skip_dask:
        systems["dask"] = dask_clients
    for name, make in systems.items():
        record = measure(make, n_tasks, n_rtt)
        result[name] = {**record, "idle_summary": summary(record["idle"]),
                        "busy_summary": summary(record["busy"])}
        print(f"{name}: graph {record['graph_seconds']:.1f} s, busy round trip median "
              f"{result[name]['busy_summary']['median'] * 1e3:.1f} ms", flush=True)
    rows = []
    for figure, part, stat in (("idle round trip, median (ms)", "idle_summary", "median"),
                               ("round trip during the graph, median (ms)", "busy_summary",
                                "median"),
                               ("round trip during the graph, p90 (ms)", "busy_summary", "p90"),
                               ("round trip during the graph, max (ms)", "busy_summary", "max")):
        mk = result["memkube"][part][stat] * 1e3
        dk = result["dask"][part][stat] * 1e3 if "dask" in result else None
        rows.append({"figure": figure, "memkube": mk, "dask": dk,
                     "memkube/dask": benchlib.ratio(mk, dk)})
    rows.append({"figure": f"{n_tasks:,}-task graph, wall time (s)",
                 "memkube": result["memkube"]["graph_seconds"],
                 "dask": result["dask"]["graph_seconds"] if "dask" in result else None,
                 "memkube/dask": benchlib.ratio(result["memkube"]["graph_seconds"],
                                                result["dask"]["graph_seconds"]
                                                if "dask" in result else None)})
    benchlib.print_table(f"fairness: client B's submit while client A runs {n_tasks:,} tasks",
                         rows, ["figure", "memkube", "dask", "memkube/dask"])
    result["table"] = rows
    benchlib.write_json("fairness", result)


if __name__ == "__main__":
    main()
