"""Ray as the second peer of the benchmarks: the same shapes, in a process of its own.

``raylib.run(shape, **params)`` (used by the other scripts) starts this file as a subprocess,
which starts a local Ray (loopback only: ``_node_ip_address="127.0.0.1"``, no dashboard, no
usage stats, its own temp dir), runs one shape and prints one JSON line. Shapes:

* ``ooc``: out of core. Object store memory = the memkube worker's memory limit, spilling
  to a directory in the same spill root; one CPU; ``make_chunk`` ``n`` times, wait for all
  (all referenced), ``chunk_sum`` of each, ``ray.get`` the sums. Reports wall time, the sum
  and the bytes Ray spilled and restored (its memory summary).
* ``map``: ``noop.remote(i)`` for ``n`` fresh values then ``ray.get``, on 2 CPUs; tasks/s
  per round.
* ``gather``: ``n`` chunks built by tasks, then one ``ray.get`` of all of them, timed. On
  one node the driver maps Ray's shared-memory object store: no bytes cross a socket.
* ``put``: ``n`` chunks built in the driver (the same values as the other systems'
  scatter), then ``ray.put`` of each, timed; checked by a task per object. On one node
  ``ray.put`` copies into the shared-memory store: no bytes cross a socket either.

Not covered: Ray in a memory cgroup (its raylet, GCS and workers alone need more than the
768 MiB the memkube and dask workers get), several nodes.

    .venv/bin/python bench/ray_peer.py SHAPE JSON_PARAMS
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any


def make_chunk(i: int, nbytes: int, kind: str) -> Any:
    import numpy as np

    if kind == "random":
        return np.random.default_rng(i).random(nbytes // 8)
    return np.zeros(nbytes // 8)


def chunk_sum(a: Any) -> float:
    return float(a.sum())


def fingerprint(a: Any) -> float:
    return float(a[:1024].sum())


def noop(x: int) -> int:
    return x


def _spill_figures() -> dict[str, float]:
    """Ray's own spill counters; empty when its memory summary is unavailable (it needs
    grpcio, which only ``ray[default]`` installs)."""
    try:
        from ray._private.internal_api import memory_summary

        text = memory_summary(stats_only=True)
    except Exception:  # noqa: BLE001 - a missing optional part of Ray: no figure
        return {}
    out: dict[str, float] = {}
    for label, key in (("Spilled", "spilled_mib"), ("Restored", "restored_mib")):
        m = re.search(rf"{label} ([\d.]+) MiB", text)
        if m:
            out[key] = float(m.group(1))
    return out


def main() -> None:
    shape, params = sys.argv[1], json.loads(sys.argv[2])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    kwargs: dict[str, Any] = {"include_dashboard": False, "_node_ip_address": "127.0.0.1",
                              "_temp_dir": tmp, "log_to_driver": False,
                              "num_cpus": params.get("cpus", 1)}
    if shape == "ooc":
        spill = params["spill_dir"]
        kwargs["object_store_memory"] = params["limit"]
        kwargs["_system_config"] = {"object_spilling_config": json.dumps(
            {"type": "filesystem", "params": {"directory_path": spill}})}
    out: dict[str, Any] = {"shape": shape}
    ray.init(**kwargs)
    try:
        if shape == "ooc":
            make, total = ray.remote(make_chunk), ray.remote(chunk_sum)
            ray.get(make.remote(0, 8, "zeros"))  # warm up the worker
            start = time.perf_counter()
            refs = [make.remote(i, params["chunk"], params["kind"]) for i in range(params["n"])]
            ray.wait(refs, num_returns=len(refs), timeout=params.get("timeout", 300),
                     fetch_local=False)
            out["total"] = float(sum(ray.get([total.remote(r) for r in refs])))
            out["wall_s"] = time.perf_counter() - start
            out.update(_spill_figures())
        elif shape == "map":
            task = ray.remote(noop)
            ray.get([task.remote(i) for i in range(200)])  # warm up the workers
            rates = []
            for r in range(params["rounds"]):
                start = time.perf_counter()
                got = ray.get([task.remote(i) for i in range(r * params["n"],
                                                             (r + 1) * params["n"])])
                rates.append(params["n"] / (time.perf_counter() - start))
                assert got[0] == r * params["n"]
            out["tasks_per_s"] = rates
            times = []
            for i in range(params.get("round_trips", 0)):
                start = time.perf_counter()
                assert ray.get(task.remote(i)) == i
                times.append(time.perf_counter() - start)
            out["round_trip_s"] = times
        elif shape == "gather":
            make = ray.remote(make_chunk)
            refs = [make.remote(i, params["chunk"], "random") for i in range(params["n"])]
            ray.wait(refs, num_returns=len(refs), fetch_local=False)
            start = time.perf_counter()
            values = ray.get(refs)
            out["gather_s"] = time.perf_counter() - start
            out["nbytes"] = sum(v.nbytes for v in values)
            out["check"] = float(sum(float(v[:1024].sum()) for v in values))
        elif shape == "put":
            values = [make_chunk(i, params["chunk"], "random") for i in range(params["n"])]
            ray.get(ray.put(values[0][:8]))  # the store is up
            start = time.perf_counter()
            refs = [ray.put(v) for v in values]
            out["put_s"] = time.perf_counter() - start
            check = ray.remote(fingerprint)
            out["check"] = float(sum(ray.get([check.remote(r) for r in refs])))
            out["nbytes"] = sum(v.nbytes for v in values)
        else:
            raise SystemExit(f"unknown shape {shape!r}")
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
