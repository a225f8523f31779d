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
* ``gather-nodes`` and ``put-nodes``: the same on a Ray cluster of three nodes on this
  machine (``ray.cluster_utils.Cluster``): a head node with no CPUs, where the driver runs,
  and two worker nodes of one CPU each, every node with its own object store and raylet.
  ``gather-nodes`` builds the chunks by tasks pinned to the worker nodes (half on each) and
  times one ``ray.get`` in the driver: every byte crosses a socket into the head's store,
  as when a KubeRay client gathers from worker pods. ``put-nodes`` times ``ray.put`` of
  each chunk plus a task per chunk, pinned to the worker nodes (half on each), that
  touches it: the time until every value is in a worker node's store, the shape of a
  scatter to workers. This is the shape memkube's and dask's gather and scatter have.

Not covered: Ray in a memory cgroup (its raylet, GCS and workers alone need more than the
768 MiB the memkube and dask workers get).

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
from pathlib import Path
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


def _timed_get(refs: list[Any]) -> dict[str, Any]:
    """Once every chunk exists, one ``ray.get`` of all of them, timed; with a check."""
    import ray

    ray.wait(refs, num_returns=len(refs), fetch_local=False)
    start = time.perf_counter()
    values = ray.get(refs)
    return {"gather_s": time.perf_counter() - start, "nbytes": sum(v.nbytes for v in values),
            "check": float(sum(float(v[:1024].sum()) for v in values))}


def _start_nodes(tmp: str, store_bytes: int) -> tuple[Any, list[str]]:
    """A head node with no CPUs (the driver's) and two one-CPU worker nodes, on loopback.

    Ray replaces a loopback bootstrap address with the machine's own IP when it expects a
    real cluster (``ENABLE_RAY_CLUSTER``), and that IP is not where the GCS listens here;
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (set by ``raylib``) keeps loopback. Returns
    the cluster and the worker nodes' ids."""
    import ray
    from ray.cluster_utils import Cluster

    Path(tempfile.gettempdir(), "ray").mkdir(exist_ok=True)  # Cluster writes its address there
    common = {"object_store_memory": store_bytes, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={
        **common, "num_cpus": 0, "include_dashboard": False, "temp_dir": tmp})
    workers = [cluster.add_node(num_cpus=1, **common) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    return cluster, [n.node_id for n in workers]


def _on(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def run_on_nodes(shape: str, params: dict[str, Any], tmp: str) -> dict[str, Any]:
    import ray

    out: dict[str, Any] = {"shape": shape, "nodes": 3}
    cluster, nodes = _start_nodes(tmp, params.get("store", 2 << 30))
    try:
        if shape == "gather-nodes":
            make = ray.remote(make_chunk)
            refs = [make.options(scheduling_strategy=_on(nodes[i % 2])).remote(
                i, params["chunk"], "random") for i in range(params["n"])]
            out.update(_timed_get(refs))
        else:
            values = [make_chunk(i, params["chunk"], "random") for i in range(params["n"])]
            check = ray.remote(fingerprint)
            ray.get([check.options(scheduling_strategy=_on(n)).remote(ray.put(values[0][:8]))
                     for n in nodes])  # workers up on both nodes
            start = time.perf_counter()
            refs = [ray.put(v) for v in values]
            sums = ray.get([check.options(scheduling_strategy=_on(nodes[i % 2])).remote(r)
                            for i, r in enumerate(refs)])
            out["put_s"] = time.perf_counter() - start
            out["check"] = float(sum(sums))
            out["nbytes"] = sum(v.nbytes for v in values)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


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
    if shape in ("gather-nodes", "put-nodes"):
        try:
            out = run_on_nodes(shape, params, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("RESULT " + json.dumps(out), flush=True)
        return
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
            out.update(_timed_get(refs))
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
