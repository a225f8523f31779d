"""Operator benchmark: 100 WorkerPools of 4 workers applied at once against the real API server.

Starts a local control plane (tests/support/localkube: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, the pinned versions of hack/versions.env), runs
`memkube operator run` as its own process with a ServiceAccount token of its own (so the
server's audit log tells its requests apart), creates every WorkerPool in one burst, and
reports:

- seconds until every child exists (a Secret, a scheduler Pod and Service per pool, and
  every worker Pod), and until every pool's status shows all its workers;
- seconds until every pool reports phase Running once the benchmark, playing the kubelet
  (no node runs pods), has written every pod Ready through the status subresource (the
  writing itself is timed separately and included);
- the operator process's CPU seconds, and CPU seconds per reconcile pass (a pass starts
  with one GET of its WorkerPool, counted in the audit log);
- API requests per pool (the operator's, from the audit log), and the CPU seconds the
  API server and etcd spent meanwhile.

Schedulers are pointed at a closed loopback port: this measures the Kubernetes side of the
operator, not retirement. No dask.distributed counterpart: dask has no operator to run
against this control plane here. Usage::

    .venv/bin/python bench/operator_bench.py [--pools 100] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
for source in ("worker_image", "operator", "tests/support"):
    if str(ROOT / source) not in sys.path:
        sys.path.insert(0, str(ROOT / source))

from localkube import ControlPlane, Kube
from localkube.crds import WORKERPOOL_CRD
from localkube.fixtures import admin

GROUP, VERSION, PLURAL = "memkube.dev", "v1alpha1", "workerpools"
ACCOUNT = "bench-operator"


def workerpool(name: str, replicas: int) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "worker": {"memoryLimit": "1Gi"}},
    }


class Tracker:
    """Counts the pools' children incrementally from watch streams of the namespace.

    Listing every object after every change would make the benchmark measure itself.
    """

    def __init__(self, kube: Kube, namespace: str, workers: int) -> None:
        self.kube, self.namespace, self.workers = kube, namespace, workers
        self.pools: set[str] = set()
        self.secrets: set[str] = set()
        self.services: set[str] = set()
        self.schedulers: set[str] = set()
        self.pods: dict[str, set[str]] = {}
        self.replicas: dict[str, int] = {}
        self.phases: dict[str, str] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(group, version, plural), daemon=True)
            for group, version, plural in (
                ("", "v1", "pods"),
                ("", "v1", "secrets"),
                ("", "v1", "services"),
                (GROUP, VERSION, PLURAL),
            )
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()

    def _watch(self, group: str, version: str, plural: str) -> None:
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        url = f"{base}/namespaces/{self.namespace}/{plural}"
        params = {"watch": "true", "resourceVersion": "0"}
        try:
            with self.kube.http.stream(
                "GET", url, params=params, timeout=httpx.Timeout(10.0, read=None)
            ) as resp:
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line:
                        event = json.loads(line)
                        with self._lock:
                            self._apply(event["type"], event["object"])
                        self._loop.call_soon_threadsafe(self._changed.set)
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise

    def _apply(self, kind_of_change: str, obj: dict[str, Any]) -> None:
        kind, meta = obj.get("kind"), obj["metadata"]
        name, labels = meta["name"], meta.get("labels") or {}
        pool = labels.get("memkube.dev/pool", "")
        gone = kind_of_change == "DELETED"
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
            while True:
                with self._lock:
                    if check():
                        return
                self._changed.clear()
                await self._changed.wait()


def operator_kubeconfig(kube: Kube, plane: ControlPlane, namespace: str, path: Path) -> str:
    """A kubeconfig with a token of a ServiceAccount bound to cluster-admin; its user name."""
    kube.create_object(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ACCOUNT, "namespace": namespace},
        }
    )
    kube.create_object(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{ACCOUNT}-{namespace}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        }
    )
    token = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{ACCOUNT}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 7200},
        },
    )["status"]["token"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority": str(plane.pki.ca.cert),
                },
            }
        ],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {
                "name": "local",
                "context": {"cluster": "local", "user": ACCOUNT, "namespace": namespace},
            }
        ],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    return f"system:serviceaccount:{namespace}:{ACCOUNT}"


def audit_counts(log: Path, offset: int, user: str) -> tuple[int, int]:
    """(requests, reconcile passes) of ``user`` logged after byte ``offset``; a pass starts
    with one GET of a WorkerPool by name."""
    seen: dict[str, dict[str, Any]] = {}
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            event = json.loads(line)
            if event["user"]["username"] == user:
                seen[event["auditID"]] = event
    passes = sum(
        1
        for e in seen.values()
        if e["verb"] == "get"
        and (e.get("objectRef") or {}).get("resource") == PLURAL
        and not (e.get("objectRef") or {}).get("subresource")
    )
    return len(seen), passes


def cpu_seconds(*processes: psutil.Process) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


async def run(pools: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="memkube-bench-") as tmp:
        plane = ControlPlane(Path(tmp) / "cluster", crds=(WORKERPOOL_CRD,)).start()
        kube = admin(plane)
        try:
            return await _measure(plane, kube, Path(tmp), pools, workers)
        finally:
            kube.close()
            plane.stop()


async def _measure(
    plane: ControlPlane, kube: Kube, tmp: Path, pools: int, workers: int
) -> dict[str, float]:
    namespace = kube.make_namespace("bench")
    user = operator_kubeconfig(kube, plane, namespace, tmp / "operator.kubeconfig")
    server = [
        psutil.Process(c.pid)
        for c in plane.components
        if c.name in ("kube-apiserver", "etcd") and c.pid
    ]
    env = {
        **os.environ,
        "KUBECONFIG": str(tmp / "operator.kubeconfig"),
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("worker_image", "operator")),
    }
    operator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memkube_operator.cli",
        "run",
        f"--namespace={namespace}",
        "--resync=600",
        f"--log-level={os.environ.get('BENCH_LOG', 'ERROR')}",
        "--scheduler-url=http://127.0.0.1:9/{namespace}/{service}",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None if os.environ.get("BENCH_LOG") else asyncio.subprocess.DEVNULL,
    )
    tracker = Tracker(kube, namespace, 1)
    try:
        process = psutil.Process(operator.pid)
        # Warm up: imports, login, watches established.
        tracker.pools = {"warmup"}
        kube.create_object(
            {**workerpool("warmup", 1), "metadata": {"name": "warmup", "namespace": namespace}}
        )
        await tracker.until(tracker.children_exist, timeout=120)
        offset = plane.audit_log.stat().st_size
        cpu0, server0 = cpu_seconds(process), cpu_seconds(*server)

        tracker.pools, tracker.workers = {f"pool-{i:03d}" for i in range(pools)}, workers
        started = time.perf_counter()
        for name in sorted(tracker.pools):
            kube.create_object(
                {**workerpool(name, workers), "metadata": {"name": name, "namespace": namespace}}
            )
        await tracker.until(tracker.children_exist, timeout=1800)
        children = time.perf_counter() - started
        await tracker.until(tracker.status_counts, timeout=1800)
        status = time.perf_counter() - started

        ready_started = time.perf_counter()
        await asyncio.to_thread(kube.mark_pods_ready, namespace)
        marking = time.perf_counter() - ready_started
        await tracker.until(tracker.all_running, timeout=1800)
        running = time.perf_counter() - ready_started

        cpu = cpu_seconds(process) - cpu0
        server_cpu = cpu_seconds(*server) - server0
        requests, count = audit_counts(plane.audit_log, offset, user)
    finally:
        tracker.close()
        operator.terminate()
        await operator.wait()
    return {
        "pools": pools,
        "workers_per_pool": workers,
        "seconds_until_all_children_exist": children,
        "seconds_until_all_status_replicas": status,
        "seconds_writing_pods_ready_as_kubelet": marking,
        "seconds_until_all_running_after_ready": running,
        "operator_cpu_seconds": cpu,
        "reconcile_passes": count,
        "cpu_seconds_per_reconcile": cpu / max(count, 1),
        "api_requests_per_pool": requests / pools,
        "apiserver_and_etcd_cpu_seconds": server_cpu,
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
