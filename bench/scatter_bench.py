"""Scatter 1 GiB from the client into the pool: memkube vs dask.distributed and Ray (issue 13).

Two workers x one thread, 2 GiB memory limit each (the scattered data stays in memory: no
spilling is measured here). The values are 32 MiB random float64 arrays built in this
process once, the same for every system; each run times one ``scatter`` of all of them
(returning once every value is on a worker and registered), after a small warm-up scatter
(connections, and memkube's reachability probes). The values are then checked by a task on
each (``fingerprint``), untimed, and compared across systems.

* memkube as it chooses: straight to the workers the scheduler places the values on
  (``client/direct.py``), with the bytes the scheduler relayed (``proxied_bytes``) recorded;
* memkube with the workers unreachable for the client (its address seam,
  ``client.routes.resolve``): through the scheduler, as behind a port-forward;
* dask as it chooses: ``client.scatter`` from outside a worker goes through the scheduler
  (``direct=None`` resolves to ``False``); and dask with ``direct=True``;
* Ray (``ray_peer.py``): on a cluster of three nodes of this machine, ``ray.put`` of each
  array in the driver's head node plus a task per array on the two worker nodes that
  touches it (shape ``put-nodes``: until every value is in a worker node's store, each byte
  across a socket, the shape of a scatter; the figure compared); and ``ray.put`` alone on
  one node (shape ``put``: a copy into the shared-memory store, no socket; shown for
  completeness).

    .venv/bin/python bench/scatter_bench.py [--quick] [--repeats N] [--no-ray]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import raylib
from benchlib import GiB, MiB

CHUNK = 32 * MiB
MEMORY_LIMIT = "2GiB"


def make_chunk(i: int, nbytes: int) -> Any:
    import numpy as np

    return np.random.default_rng(i).random(nbytes // 8)


def fingerprint(a: Any) -> float:
    return float(a[:1024].sum())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_memkube(values: list[Any], *, through_scheduler: bool) -> dict[str, Any]:
    import memkube

    with tempfile.TemporaryDirectory(prefix="memkube-scatter-") as spill, \
            memkube.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=MEMORY_LIMIT,
                                 worker_args=["--spill-dir", spill]) as cluster, \
            memkube.Client(cluster) as client:
        if through_scheduler:
            bogus = f"tcp://127.0.0.1:{_closed_port()}"
            client.routes.resolve = lambda address: bogus
        client.scatter([make_chunk(10**6, MiB), make_chunk(10**6 + 1, MiB)], hash=False)  # warm up
        before = dict(cluster.scheduler.proxied_bytes)
        start = time.perf_counter()
        futures = client.scatter(values, hash=False)
        elapsed = time.perf_counter() - start
        proxied = cluster.scheduler.proxied_bytes["scatter"] - before["scatter"]
        check = sum(client.gather(client.map(fingerprint, futures)))
        holders = client.who_has(futures)
        return {"system": "memkube", "through_scheduler": through_scheduler,
                "scatter_s": elapsed, "check": check, "proxied_bytes": proxied,
                "direct_bytes": client.routes.scattered_bytes,
                "fallback_keys": client.routes.scatter_fallback_keys,
                "workers_used": len({h for hs in holders.values() for h in hs})}


def measure_dask(values: list[Any], *, direct: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dask-scatter-") as spill, \
            benchlib.dask_pool(2, memory_limit=MEMORY_LIMIT,
                               local_directory=Path(spill)) as (client, _workers):
        client.scatter([make_chunk(10**6, MiB), make_chunk(10**6 + 1, MiB)], direct=direct, hash=False)
        start = time.perf_counter()
        futures = client.scatter(values, direct=direct, hash=False)
        elapsed = time.perf_counter() - start
        check = sum(client.gather(client.map(fingerprint, futures)))
        holders = client.who_has(futures)
        return {"system": "dask", "direct": direct, "scatter_s": elapsed, "check": check,
                "workers_used": len({h for hs in holders.values() for h in hs})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.25 GiB, one run")
    parser.add_argument("--repeats", type=int, default=None, help="runs (default 3, quick 1)")
    parser.add_argument("--gib", type=float, default=None, help="GiB scattered (default 1)")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    n = int((args.gib or (0.25 if args.quick else 1.0)) * GiB) // CHUNK
    load = benchlib.load_average()
    values = [make_chunk(i, CHUNK) for i in range(n)]
    runs: dict[str, list[dict[str, Any]]] = {
        "memkube": [], "memkube-scheduler": [], "dask": [], "dask-direct": []}
    for i in range(repeats):
        for name in list(runs)[:: 1 if i % 2 == 0 else -1]:
            if name.startswith("memkube"):
                r = measure_memkube(values, through_scheduler=name == "memkube-scheduler")
            else:
                r = measure_dask(values, direct=name == "dask-direct")
            runs[name].append(r)
            print(f"scatter {name}: {r['scatter_s']:.3f} s", flush=True)
    no_ray = "--no-ray" if args.no_ray else raylib.available()
    ray_runs = raylib.repeat("put", repeats, no_ray, n=n, chunk=CHUNK, cpus=2)
    ray_nodes = raylib.repeat("put-nodes", repeats, no_ray, n=n, chunk=CHUNK)
    med = {k: benchlib.median([r["scatter_s"] for r in v]) for k, v in runs.items()}
    med["ray"] = raylib.median_of(ray_nodes, "put_s")
    med["ray-one-node"] = raylib.median_of(ray_runs, "put_s")
    raylib.warn_unless_equal("scattered", *runs.values(), ray_runs, ray_nodes)
    size = f"{n * CHUNK / GiB:.2f} GiB"
    rows: list[dict[str, Any]] = []
    for label, key in ((f"scatter {size} (s) - memkube straight to the workers", "memkube"),
                       ("  memkube through the scheduler (workers unreachable)",
                        "memkube-scheduler")):
        rows.append({"figure": label, "memkube": med[key], "dask": med["dask"],
                     "dask direct": med["dask-direct"], "ray": med["ray"],
                     "memkube/dask": benchlib.ratio(med[key], med["dask"]),
                     "memkube/dask direct": benchlib.ratio(med[key], med["dask-direct"]),
                     "memkube/ray": benchlib.ratio(med[key], med["ray"])})
    rows.append({"figure": "  Ray on one node: ray.put into its own store, no socket",
                 "memkube": med["memkube"], "ray": med["ray-one-node"],
                 "memkube/ray": benchlib.ratio(med["memkube"], med["ray-one-node"])})
    direct = runs["memkube"][-1]
    rows.append({"figure": "  memkube: MiB through the scheduler, direct / fallback",
                 "memkube": f"{direct['proxied_bytes'] / MiB:.0f} / "
                            f"{runs['memkube-scheduler'][-1]['proxied_bytes'] / MiB:.0f}"})
    rows.append({"figure": "  workers holding the values",
                 "memkube": direct["workers_used"], "dask": runs["dask"][-1]["workers_used"],
                 "dask direct": runs["dask-direct"][-1]["workers_used"]})
    benchlib.print_table(f"scatter: 2 workers x 1 thread, {MEMORY_LIMIT} each, median of "
                         f"{repeats}; load before {load}, after {benchlib.load_average()}",
                         rows, ["figure", "memkube", "dask", "dask direct", "ray",
                                "memkube/dask", "memkube/dask direct", "memkube/ray"])
    if no_ray is not None:
        print(f"ray: not run ({no_ray})")
    benchlib.write_json("scatter", {"machine": benchlib.machine(), "chunks": n,
                                    "chunk": CHUNK, "runs": runs, "ray": ray_runs,
                                    "ray-nodes": ray_nodes,
                                    "table": rows, "load_before": load,
                                    "load_after": benchlib.load_average()})


if __name__ == "__main__":
    main()
