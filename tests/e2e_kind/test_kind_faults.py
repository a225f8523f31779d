"""Faults on a real cluster: the kernel's OOM killer, and the operator's own pod dying.

1. OOM, side by side: two one-worker pools with the same pod limit (512Mi) are each given
   the same 640 MiB of blocks to hold. In the pool whose memory manager is switched off (all
   thresholds null) the kernel kills the worker: the kubelet reports OOMKilled, the pool's
   status.oomKills counts it and an OOMKilled Event names the pod. The default pool spills
   and keeps every block. A plain Python pod with the same limit holding the same blocks is
   OOMKilled too (what memkube saves a user from).
2. The operator's pod is deleted in the middle of a scale-up from 1 to 4 workers: its
   replacement (the Deployment's) finishes the job, and exactly 4 worker pods exist.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cloudpickle
import pytest
from kubetools import Kube, restricted_namespace
from scenario import (
    BLOCK,
    FAULTS_NS,
    GROW_FROM,
    GROW_POOL,
    GROW_TO,
    OOM_BLOCKS,
    plain_pod,
    small_pool,
)

pytestmark = pytest.mark.kind

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_block(i: int) -> bytes:
    return random.Random(i).randbytes(BLOCK)


def checksum(block: bytes) -> int:
    return sum(block[:: 4096])


def workers(kube: Kube, pool: str) -> list[dict[str, Any]]:
    selector = f"memkube.dev/pool={pool},app.kubernetes.io/component=worker"
    return [
        p for p in kube.get("pods", namespace=FAULTS_NS, selector=selector)
        if not p["metadata"].get("deletionTimestamp")
    ]


@pytest.fixture(scope="module")
def faults_ns(kube: Kube, operator: str) -> str:
    kube.apply(restricted_namespace(FAULTS_NS))
    return FAULTS_NS


@contextmanager
def connect(kube: Kube, pool: str) -> Iterator[Any]:
    import memkube

    token = kube.secret_value(f"{pool}-token", "token", FAULTS_NS)
    with kube.port_forward(f"svc/{pool}-scheduler", 8786, FAULTS_NS) as port, \
            memkube.Client(f"tcp://127.0.0.1:{port}", token=token) as client:
        yield client


def oom_killed(pod: dict[str, Any]) -> bool:
    for status in pod["status"].get("containerStatuses", []):
        for state in (status.get("lastState") or {}, status.get("state") or {}):
            if (state.get("terminated") or {}).get("reason") == "OOMKilled":
                return True
    return False


def test_without_the_memory_manager_the_kernel_kills_with_it_the_worker_survives(
    kube: Kube, faults_ns: str, image: str
) -> None:
    off, on = small_pool(image, "mm-off", 1, False), small_pool(image, "mm-on", 1, True)
    kube.create([off, on])  # create: the null thresholds must reach the server as nulls
    for pool in ("mm-off", "mm-on"):
        kube.wait(f"workerpool/{pool}", "condition=Ready", faults_ns, timeout=600)
    stored = kube.get("workerpool", "mm-off", faults_ns)["spec"]["worker"]["thresholds"]
    assert all(v is None for v in stored.values()), stored
    expected = [checksum(make_block(i)) for i in range(OOM_BLOCKS)]

    with connect(kube, "mm-on") as client:
        held = client.map(make_block, range(OOM_BLOCKS))
        assert client.gather(client.map(checksum, held)) == expected

    (victim,) = workers(kube, "mm-off")
    with connect(kube, "mm-off") as client:
        held = client.map(make_block, range(OOM_BLOCKS))
        kube.wait_until(
            "the kernel to OOM-kill the worker without a memory manager",
            lambda: any(oom_killed(p) for p in workers(kube, "mm-off")),
            timeout=600,
        )
        del held

    status = kube.wait_until(
        "status.oomKills",
        lambda: (s := kube.get("workerpool", "mm-off", faults_ns)["status"])
        and s.get("oomKills", 0) >= 1 and s,
        timeout=300,
    )
    assert status["oomKills"] >= 1
    events = kube.get("events", namespace=faults_ns)
    assert any(
        e.get("reason") == "OOMKilled" and victim["metadata"]["name"] in e.get("message", "")
        for e in events
    )
    # The default pool's worker held the same blocks and was never killed.
    (survivor,) = workers(kube, "mm-on")
    assert not oom_killed(survivor)
    assert all(s.get("restartCount", 0) == 0 for s in survivor["status"]["containerStatuses"])
    assert kube.get("workerpool", "mm-on", faults_ns)["status"].get("oomKills", 0) == 0
    kube.kubectl("delete", "workerpool", "mm-off", "mm-on", "-n", faults_ns, "--wait=true",
                 timeout=300)


def test_a_plain_pod_with_the_same_limit_is_oom_killed(
    kube: Kube, faults_ns: str, image: str
) -> None:
    kube.apply(plain_pod(image))
    pod = kube.wait_until(
        "the kubelet to report the plain pod OOMKilled",
        lambda: (p := kube.get("pod", "plain-python", faults_ns)) and oom_killed(p) and p,
        timeout=300,
    )
    (status,) = pod["status"]["containerStatuses"]
    # It never got as far as printing: every run ended in the kernel's SIGKILL.
    for state in (status.get("lastState") or {}, status.get("state") or {}):
        if "terminated" in state:
            assert state["terminated"]["exitCode"] == 137, state
    kube.kubectl("delete", "pod", "plain-python", "-n", faults_ns, timeout=120)


def test_the_operator_dies_mid_scale_up_and_its_replacement_finishes(
    kube: Kube, faults_ns: str, operator: str, image: str
) -> None:
    body = small_pool(image, GROW_POOL, GROW_FROM, True)
    body["spec"]["worker"].update(memoryLimit="128Mi", memoryOverhead="128Mi", cpu="100m")
    kube.apply(body)
    kube.wait(f"workerpool/{GROW_POOL}", "condition=Ready", faults_ns, timeout=600)
    (old,) = kube.get("pods", namespace=operator, selector="app.kubernetes.io/name=memkube")
    kube.kubectl("scale", f"workerpool/{GROW_POOL}", f"--replicas={GROW_TO}", "-n", faults_ns)
    kube.kubectl("delete", "pod", "-n", operator, old["metadata"]["name"], "--wait=false")
    kube.wait_until(
        "a new operator pod, Ready",
        lambda: [
            p for p in kube.get("pods", namespace=operator,
                                selector="app.kubernetes.io/name=memkube")
            if p["metadata"]["uid"] != old["metadata"]["uid"]
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", []))
        ],
        timeout=300,
    )
    kube.wait(f"workerpool/{GROW_POOL}", f"jsonpath={{.status.readyReplicas}}={GROW_TO}",
              faults_ns, timeout=600)
    # Settled: exactly GROW_TO worker pods, and still so a while later (no late duplicates).
    first = {p["metadata"]["name"] for p in workers(kube, GROW_POOL)}
    time.sleep(15)
    again = {p["metadata"]["name"] for p in workers(kube, GROW_POOL)}
    assert len(first) == GROW_TO and again == first
    with connect(kube, GROW_POOL) as client:
        info = client.scheduler_info()
        assert {w["name"] for w in info["workers"].values()} == first
