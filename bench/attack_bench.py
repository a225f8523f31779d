"""A normal client's round trips under a connection attack, memkube vs dask.distributed (issue 14).

Two workers x one thread per system, the scheduler in this process (memkube's
``LocalCluster``; dask's in-process scheduler with ``dask worker`` processes). For each:

1. scatter 8 MiB and hold 50 results (data that must survive);
2. *idle*: ``--samples`` sequential ``submit(add, i, 1).result()`` round trips;
3. *attack*: ``tests/support/attacks.py`` in its own process, for ``--duration`` seconds,
   against the scheduler's port and every worker's port at once (silent connections,
   trickled headers, trickled login bodies, 256 MiB bodies, connection churn: the same bytes
   for both systems); meanwhile round trips as above, and every 50 a new client connects and
   runs one task;
4. afterwards: the held data is gathered and compared, the workers counted.

Figures: median / p95 / max round trip idle and under attack, the slowdown (attack / idle),
failed round trips (30 s timeout each), the peak growth of this process's RSS (where both
schedulers live), and whether data survived. ``MEMKUBE_SRC=...`` measures another copy of the
runtime (e.g. the tree before the hardening) the same way.

    .venv/bin/python bench/attack_bench.py [--quick] [--duration S] [--systems memkube,dask]
"""

from __future__ import annotations

import argparse
import operator
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import psutil
from benchlib import MiB

ATTACKS = Path(__file__).resolve().parents[1] / "tests" / "support" / "attacks.py"


Pool = Iterator[tuple[Any, list[str], Callable[[], Any]]]  # client, urls, new client


@contextmanager
def memkube_pool() -> Pool:
    from memkube import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB") as cluster, \
            Client(cluster) as client:
        workers = [a.replace("tcp://", "http://") for a in client.scheduler_info()["workers"]]
        yield (client, [cluster.scheduler_address.replace("tcp://", "http://"), *workers],
               lambda: Client(cluster.scheduler_address, token=cluster.token))


@contextmanager
def dask_pool() -> Pool:
    from distributed import Client

    with benchlib.dask_pool(2, memory_limit="1GiB") as (client, _):
        address = client.scheduler.address
        workers = [a.replace("tcp://", "http://") for a in client.scheduler_info()["workers"]]
        yield (client, [address.replace("tcp://", "http://"), *workers],
               lambda: Client(address, timeout=30))


def round_trip(client: Any, i: int) -> float | None:
    t = time.perf_counter()
    try:
        if client.submit(operator.add, i, 1, pure=False).result(timeout=30) != i + 1:
            return None
    except Exception:  # noqa: BLE001 - a failed round trip is a figure, not a crash
        return None
    return time.perf_counter() - t


def summary(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"median_ms": None, "p95_ms": None, "max_ms": None}
    ms = sorted(x * 1000 for x in samples)
    return {"median_ms": statistics.median(ms), "p95_ms": ms[int((len(ms) - 1) * 0.95)],
            "max_ms": ms[-1]}


def measure(system: str, pool: Callable[[], Any], duration: float,
            samples: int) -> dict[str, Any]:
    me = psutil.Process()
    with pool() as (client, urls, new_client):
        blobs = [os.urandom(MiB) for _ in range(8)]
        scattered = client.scatter(blobs)
        held = client.map(operator.add, range(50), [1] * 50)
        client.gather(held)
        rss_idle = me.memory_info().rss
        idle = [x for x in (round_trip(client, i) for i in range(samples)) if x is not None]
        attacker = subprocess.Popen([sys.executable, str(ATTACKS), "--duration", str(duration),
                                     *urls], stdout=subprocess.PIPE, text=True)
        assert attacker.stdout is not None
        attacker.stdout.readline()
        peak = [rss_idle]

        def sample() -> None:
            while attacker.poll() is None:
                peak.append(me.memory_info().rss)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(min(3.0, duration / 4))
        under: list[float] = []
        failed = 0
        connects: list[float] = []
        i = 10**6
        while attacker.poll() is None:
            rt = round_trip(client, i)
            i += 1
            if rt is None:
                failed += 1
            else:
                under.append(rt)
            if (len(under) + failed) % 50 == 0:
                t = time.perf_counter()
                try:
                    with new_client() as other:
                        other.submit(operator.add, 1, 1).result(timeout=30)
                    connects.append(time.perf_counter() - t)
                except Exception:  # noqa: BLE001
                    failed += 1
        counts = attacker.stdout.readline().strip()
        sampler.join(5)
        try:
            intact = (client.gather(scattered) == blobs
                      and client.gather(held) == list(range(1, 51)))
        except Exception as exc:  # noqa: BLE001
            intact = False
            print(f"{system}: data check failed: {exc!r}")
        workers = len(client.scheduler_info()["workers"])
    idle_s, under_s = summary(idle), summary(under)
    return {
        "system": system, "idle": idle_s, "attack": under_s, "connects": summary(connects),
        "failed": failed, "ok_under_attack": len(under), "workers_after": workers,
        "data_intact": intact, "rss_growth_mib": (max(peak) - rss_idle) / MiB,
        "slowdown": (under_s["median_ms"] / idle_s["median_ms"]
                     if under_s["median_ms"] and idle_s["median_ms"] else None),
        "attacker": counts,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10 s of attack, 100 idle samples")
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--systems", default="memkube,dask")
    args = p.parse_args()
    duration = args.duration or (10.0 if args.quick else 30.0)
    samples = args.samples or (100 if args.quick else 300)

    runs = {"memkube": memkube_pool, "dask": dask_pool}
    results = []
    for system in args.systems.split(","):
        print(f"{system}: {duration:.0f} s of attack ...", flush=True)
        results.append(measure(system, runs[system], duration, samples))
    rows = []
    by = {r["system"]: r for r in results}
    for figure, pick in (("idle median ms", lambda r: r["idle"]["median_ms"]),
                         ("idle p95 ms", lambda r: r["idle"]["p95_ms"]),
                         ("attack median ms", lambda r: r["attack"]["median_ms"]),
                         ("attack p95 ms", lambda r: r["attack"]["p95_ms"]),
                         ("attack max ms", lambda r: r["attack"]["max_ms"]),
                         ("slowdown (attack/idle median)", lambda r: r["slowdown"]),
                         ("new client + task median ms", lambda r: r["connects"]["median_ms"]),
                         ("round trips ok under attack", lambda r: r["ok_under_attack"]),
                         ("failed round trips", lambda r: r["failed"]),
                         ("scheduler process RSS growth MiB", lambda r: r["rss_growth_mib"]),
                         ("data intact", lambda r: r["data_intact"]),
                         ("workers after", lambda r: r["workers_after"])):
        m = pick(by["memkube"]) if "memkube" in by else None
        d = pick(by["dask"]) if "dask" in by else None
        num = isinstance(m, (int, float)) and not isinstance(m, bool)
        rows.append({"figure": figure, "memkube": m, "dask": d,
                     "memkube/dask": benchlib.ratio(m, d) if num else None})
    benchlib.print_table(f"round trips under attack ({duration:.0f} s, 2 workers each)", rows,
                         ["figure", "memkube", "dask", "memkube/dask"])
    for r in results:
        print(f"{r['system']} attacker: {r['attacker']}")
    benchlib.write_json("attack", {"machine": benchlib.machine(), "duration": duration,
                                   "samples": samples, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
