"""Runtime overhead, memkube vs dask.distributed (issue 2).

Two worker processes with one thread each. Each system is measured with only its own pool
open (both run their scheduler on threads of this process, and a second system's threads
would take turns at the GIL with the first's: FINDINGS F14), in alternating turns per round
(so background load on a shared machine hits both alike); Ray in a process of its own:

* throughput: ``map`` of N no-op tasks then ``gather`` (tasks/s; default N = 20,000);
* round trip: one ``submit(...).result()`` at a time (median of many, seconds).

``--profile`` also runs memkube's map + gather under cProfile; the scheduler and client
event loops run in threads of this process, so the profile shows the scheduler's hot path.
Not covered: task fan-in, data transfer, memory (see the other scripts).

    .venv/bin/python bench/runtime_bench.py [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import raylib


def noop(x: int) -> int:
    return x


@contextmanager
def pool(name: str) -> Iterator[Any]:
    """A client of a fresh pool of the system ``name``: 2 workers x 1 thread, 1 GiB each."""
    if name == "memkube":
        import memkube

        with memkube.LocalCluster(n_workers=2, threads_per_worker=1,
                                  memory_limit="1GiB") as mc, memkube.Client(mc) as client:
            yield client
    else:
        import distributed

        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      memory_limit="1GiB", dashboard_address=None) as dc, \
                distributed.Client(dc) as client:
            yield client


def throughput(client: Any, n: int, offset: int) -> float:
    """tasks/s of map + gather over fresh keys (``offset`` keeps keys unique per round)."""
    start = time.perf_counter()
    futures = client.map(noop, range(offset, offset + n))
    results = client.gather(futures)
    elapsed = time.perf_counter() - start
    if len(results) != n or results[0] != offset:
        raise RuntimeError(f"wrong results: {len(results)} values, first {results[:1]}")
    del futures
    return n / elapsed


def round_trips(client: Any, count: int, offset: int) -> list[float]:
    times = []
    for i in range(offset, offset + count):
        start = time.perf_counter()
        value = client.submit(noop, i).result()
        times.append(time.perf_counter() - start)
        if value != i:
            raise RuntimeError(f"submit returned {value}, expected {i}")
    return times


def profile_memkube(client: Any, n: int, offset: int, top: int = 30) -> str:
    """cProfile of one memkube map + gather; on 3.12 it sees every thread of this process."""
    prof = cProfile.Profile()
    prof.enable()
    throughput(client, n, offset)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks and rounds (< 1 min)")
    parser.add_argument("--profile", action="store_true", help="cProfile memkube's hot path")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per throughput round")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out")
    args = parser.parse_args()
    load = benchlib.load_average()
    n_tasks = args.tasks or (4000 if args.quick else 20_000)
    rounds = 1 if args.quick else 2
    n_rtt = 50 if args.quick else 300

    import memkube

    result: dict[str, Any] = {"machine": benchlib.machine(), "tasks": n_tasks, "load_before": load,
                              "rounds": rounds, "round_trips": n_rtt}
    tput: dict[str, list[float]] = {"memkube": [], "dask": []}
    rtt: dict[str, list[float]] = {"memkube": [], "dask": []}
    for r in range(rounds):
        for name in ("memkube", "dask") if r % 2 == 0 else ("dask", "memkube"):
            with pool(name) as client:
                throughput(client, 200, -1000)  # warm up imports, connections, pickling
                round_trips(client, 10, -2000)
                tput[name].append(throughput(client, n_tasks, r * n_tasks))
                print(f"round {r}: {name} {tput[name][-1]:,.0f} tasks/s", flush=True)
                if r == rounds - 1:
                    rtt[name] = round_trips(client, n_rtt, 10**7)
    if args.profile:  # alone, so dask's in-process scheduler does not blur the profile
        with memkube.LocalCluster(n_workers=2, threads_per_worker=1,
                                  memory_limit="1GiB") as mc, memkube.Client(mc) as mk:
            throughput(mk, 200, -1000)
            text = profile_memkube(mk, min(n_tasks, 5000), 10**8)
        path = benchlib.RESULTS / "runtime_profile.txt"
        benchlib.RESULTS.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"\nmemkube map+gather profile written to {path}")

    no_ray = "--no-ray" if args.no_ray else raylib.available()
    ray = (raylib.run("map", n=n_tasks, rounds=rounds, cpus=2, round_trips=n_rtt)
           if no_ray is None else {})
    if "tasks_per_s" in ray:
        tput["ray"], rtt["ray"] = ray["tasks_per_s"], ray["round_trip_s"]
        print(f"ray: {benchlib.median(ray['tasks_per_s']):,.0f} tasks/s", flush=True)
    elif ray:
        print(f"ray failed: {ray}")
    med_t = {k: benchlib.median(v) for k, v in tput.items()}
    med_r = {k: benchlib.median(v) for k, v in rtt.items()}
    ray_t, ray_r = med_t.get("ray"), med_r.get("ray")
    rows = [
        {"figure": f"map+gather {n_tasks:,} no-ops (tasks/s)", "memkube": med_t["memkube"],
         "dask": med_t["dask"], "ray": ray_t,
         "memkube/dask": benchlib.ratio(med_t["memkube"], med_t["dask"]),
         "memkube/ray": benchlib.ratio(med_t["memkube"], ray_t)},
        {"figure": "submit().result() round trip (ms, median)",
         "memkube": med_r["memkube"] * 1e3, "dask": med_r["dask"] * 1e3,
         "ray": ray_r * 1e3 if ray_r else None,
         "memkube/dask": benchlib.ratio(med_r["memkube"], med_r["dask"]),
         "memkube/ray": benchlib.ratio(med_r["memkube"], ray_r)},
    ]
    benchlib.print_table(f"runtime: 2 workers x 1 thread; load before {load}, after "
                         f"{benchlib.load_average()}", rows,
                         ["figure", "memkube", "dask", "ray", "memkube/dask", "memkube/ray"])
    if no_ray is not None:
        print(f"ray: not run ({no_ray})")
    result.update(throughput_tasks_per_s=tput, round_trip_s={
        k: {"median": med_r[k], "p90": sorted(v)[int(0.9 * len(v))]} for k, v in rtt.items()},
        table=rows)
    benchlib.write_json("runtime", result)


if __name__ == "__main__":
    main()
