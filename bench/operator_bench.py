"""Operator benchmark: 100 WorkerPools of 4 workers applied at once against the API double.

Runs `memkube operator run` as its own process (kubeconfig login, as a user would) against
the in-process API double, creates every WorkerPool in one burst, and reports:

- seconds until every child exists (a Secret, a scheduler Pod and Service per pool, and
  every worker Pod), and until every pool's status shows all its workers;
- seconds until every pool reports phase Running once the kubelet stand-in marks all pods
  ready;
- the operator process's CPU seconds, and CPU seconds per reconcile pass (a pass starts
  with one GET of its WorkerPool, counted in the double's request log);
- API requests per pool, and the CPU the double itself spent (this process): the double is
  single-threaded Python that validates every write against the full schema, so at this
  scale the wall-clock figures measure it more than the operator.

Schedulers are pointed at a closed loopback port: this measures the Kubernetes side of the
operator, not retirement. Usage::

    PYTHONPATH=worker_image:operator:tests/support .venv/bin/python bench/operator_bench.py \
        [--pools 100] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
for source in ("worker_image", "operator", "tests/support"):
    if str(ROOT / source) not in sys.path:
        sys.path.insert(0, str(ROOT / source))

from apidouble import ApiDouble
from apidouble.store import Change
from memkube_operator.crd import CRD_PATH

NS = "default"
GROUP, VERSION, PLURAL = "memkube.dev", "v1alpha1", "workerpools"


def workerpool(name: str, replicas: int) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "worker": {"memoryLimit": "1Gi"}},
    }


class Tracker:
    """Counts the pools' children incrementally from the double's change feed.

    Scanning every object on every change would make the benchmark measure itself.
    """

    def __init__(self, api: ApiDouble, pools: set[str], workers: int) -> None:
        self.pools, self.workers = pools, workers
        self.secrets: set[str] = set()
        self.services: set[str] = set()
        self.schedulers: set[str] = set()
        self.pods: dict[str, set[str]] = {}
        self.replicas: dict[str, int] = {}
        self.phases: dict[str, str] = {}
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        api.registry.store.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        obj, kind = change.obj, change.obj.get("kind")
        meta = obj["metadata"]
        name, labels = meta["name"], meta.get("labels") or {}
        pool = labels.get("memkube.dev/pool", "")
        gone = change.type == "DELETED"
        if kind == "Secret":
            (self.secrets.discard if gone else self.secrets.add)(name)
        elif kind == "Service":
            (self.services.discard if gone else self.services.add)(name)
        elif kind == "Pod" and labels.get("app.kubernetes.io/component") == "scheduler":
            (self.schedulers.discard if gone else self.schedulers.add)(pool)
        elif kind == "Pod":
            members = self.pods.setdefault(pool, set())
            (members.discard if gone else members.add)(name)
        elif kind == "WorkerPool":
            status = obj.get("status") or {}
            self.replicas[name] = int(status.get("replicas", 0))
            self.phases[name] = str(status.get("phase", ""))
        self._loop.call_soon_threadsafe(self._changed.set)

    def children_exist(self) -> bool:
        return all(
            f"{p}-token" in self.secrets
            and f"{p}-scheduler" in self.services
            and p in self.schedulers
            and len(self.pods.get(p, ())) == self.workers
            for p in self.pools
        )

    def status_counts(self) -> bool:
        return all(self.replicas.get(p) == self.workers for p in self.pools)

    def all_running(self) -> bool:
        return all(self.phases.get(p) == "Running" for p in self.pools)

    async def until(self, check: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()


def passes(api: ApiDouble) -> int:
    """Reconcile passes so far: each starts with a GET of one WorkerPool."""
    return sum(
        1
        for r in api.requests
        if r["resource"] == PLURAL and r["method"] == "GET" and r["name"] and not r["subresource"]
    )


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run(pools: int, workers: int) -> dict[str, float]:
    async with ApiDouble() as api:
        api.apply_manifests(CRD_PATH)
        env = {
            **os.environ,
            "KUBECONFIG": str(api.kubeconfig_path),
            "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("worker_image", "operator")),
        }
        operator = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "memkube_operator.cli",
            "run",
            f"--namespace={NS}",
            "--resync=600",
            f"--log-level={os.environ.get('BENCH_LOG', 'ERROR')}",
            "--scheduler-url=http://127.0.0.1:9/{namespace}/{service}",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=None if os.environ.get("BENCH_LOG") else asyncio.subprocess.DEVNULL,
        )
        try:
            process = psutil.Process(operator.pid)
            # Warm up: imports, login, watches established.
            warmup = Tracker(api, {"warmup"}, 1)
            api.create_object(workerpool("warmup", 1))
            await warmup.until(warmup.children_exist, timeout=60)
            cpu0, passes0, requests0 = cpu_seconds(process), passes(api), len(api.requests)
            double0 = cpu_seconds(psutil.Process())

            names = {f"pool-{i:03d}" for i in range(pools)}
            tracker = Tracker(api, names, workers)
            started = time.perf_counter()
            for name in sorted(names):
                api.create_object(workerpool(name, workers))
            await tracker.until(tracker.children_exist, timeout=900)
            children = time.perf_counter() - started
            await tracker.until(tracker.status_counts, timeout=900)
            status = time.perf_counter() - started

            ready_started = time.perf_counter()
            api.mark_pods_ready(NS)
            await tracker.until(tracker.all_running, timeout=900)
            running = time.perf_counter() - ready_started

            cpu = cpu_seconds(process) - cpu0
            count = passes(api) - passes0
            requests = len(api.requests) - requests0
            double = cpu_seconds(psutil.Process()) - double0
        finally:
            operator.terminate()
            await operator.wait()
    return {
        "pools": pools,
        "workers_per_pool": workers,
        "seconds_until_all_children_exist": children,
        "seconds_until_all_status_replicas": status,
        "seconds_until_all_running_after_ready": running,
        "operator_cpu_seconds": cpu,
        "reconcile_passes": count,
        "cpu_seconds_per_reconcile": cpu / max(count, 1),
        "api_requests_per_pool": requests / pools,
        "api_double_cpu_seconds": double,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    figures = asyncio.run(run(args.pools, args.workers))
    for key, value in figures.items():
        print(f"{key:40s} {value:.4f}" if isinstance(value, float) else f"{key:40s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
