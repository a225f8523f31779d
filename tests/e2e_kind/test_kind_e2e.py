"""memkube on a real Kubernetes cluster (kind): install, compute, spill, replicate, scale down.

The story, in order (the tests share one pool and run top to bottom):

1. `helm install` the chart with the image built from this checkout (conftest.py): the
   operator's Deployment is Ready. Apply examples/workerpool.yaml, shrunk (scenario.py: 3
   workers of 256Mi, a 4Gi spill disk, replication factor 1, workers spread over the two
   worker nodes), in a namespace enforcing the restricted Pod Security Standard; the pool is
   Ready and `kubectl get wp` shows its printer columns with live figures.
2. The pods carry the operator's translation; inside a running worker container the cgroup
   memory limit is the pod's limits.memory, /spill is a mount, and the worker's own limit
   (as the scheduler reports it) is memoryLimit.
3. Through `kubectl port-forward`, a client persists 2.25 GiB of incompressible blocks, three
   times what the pool's workers may hold: they spill, every checksum computed on the workers
   is right, and the WorkerPool's status shows the spilled bytes.
4. Replication across nodes, in a second pool of two workers (one per worker node) with
   replication factor 2: every value has copies on pods of both nodes (the client's who_has
   against the pods' spec.nodeName); force-deleting one node's worker pod loses no value and
   recomputes nothing (no `key-lost` event in the scheduler's timeline).
5. `kubectl scale wp/etl --replicas=2`: exactly one worker pod is deleted, after the scheduler
   retired it; every block is still there and right, and nothing was recomputed.
6. No worker was OOM-killed along the way.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cloudpickle
import pytest
from kubetools import Kube, restricted_namespace
from scenario import (
    BLOCK,
    BLOCKS,
    NS,
    POD_MEMORY,
    POOL,
    SPILL_SIZE,
    TWIN_BLOCKS,
    TWIN_POOL,
    WORKER_MEMORY,
    WORKERS,
    e2e_pool,
    twin_pool,
)

WORKER_PODS = f"memkube.dev/pool={POOL},app.kubernetes.io/component=worker"
MI = 2**20

pytestmark = pytest.mark.kind

# The functions below run on the workers: ship them by value, not as imports of this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_block(i: int) -> bytes:
    """Deterministic and incompressible, so spilling really writes it and checks are exact."""
    return random.Random(i).randbytes(BLOCK)


def digest(block: bytes) -> str:
    return hashlib.sha256(block).hexdigest()


def mebibytes(quantity: str) -> int:
    return int(quantity[:-2]) * {"Mi": 1, "Gi": 1024}[quantity[-2:]]


@pytest.fixture(scope="module")
def expected() -> dict[int, str]:
    """Each block's checksum, computed here, where no memory limit applies."""
    return {i: digest(make_block(i)) for i in range(BLOCKS)}


@pytest.fixture(scope="module")
def pool(kube: Kube, operator: str, image: str) -> dict[str, Any]:
    kube.apply(restricted_namespace(NS))
    body = e2e_pool(image)
    kube.apply(body)
    kube.wait(f"workerpool/{POOL}", "condition=Ready", NS, timeout=600)
    return body


@dataclass
class Session:
    """A client connected through `kubectl port-forward`, as a user outside the cluster is."""

    client: Any
    port: int
    token: str

    def pool_snapshot(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/pool",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def recomputed(self) -> list[dict[str, Any]]:
        """The scheduler's `key-lost` events: values recomputed from lineage."""
        return [e for e in self.pool_snapshot()["events"] if e["kind"] == "key-lost"]


@pytest.fixture(scope="module")
def session(kube: Kube, pool: dict[str, Any]) -> Iterator[Session]:
    import memkube

    token = kube.secret_value(f"{POOL}-token", "token", NS)
    with kube.port_forward(f"svc/{POOL}-scheduler", 8786, NS) as port, \
            memkube.Client(f"tcp://127.0.0.1:{port}", token=token) as client:
        yield Session(client, port, token)


@pytest.fixture(scope="module")
def blocks(session: Session) -> list[Any]:
    """The persisted blocks: futures held for the whole module, so the pool must keep them."""
    return list(session.client.map(make_block, range(BLOCKS)))


def live_workers(kube: Kube) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.get("pods", namespace=NS, selector=WORKER_PODS)
        if not p["metadata"].get("deletionTimestamp")
    ]


def ready_workers(kube: Kube, n: int) -> list[dict[str, Any]] | None:
    pods = live_workers(kube)
    ready = [
        p for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True"
               for c in p["status"].get("conditions", []))
    ]
    return ready if len(pods) == n and len(ready) == n else None


def test_the_operator_is_ready(kube: Kube, operator: str) -> None:
    (deployment,) = kube.get("deployments", namespace=operator)
    assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"] >= 1


def test_the_pool_is_ready_and_kubectl_shows_it(kube: Kube, pool: dict[str, Any]) -> None:
    table = kube.kubectl("get", "wp", POOL, "-n", NS).splitlines()
    header, row = table[0].split(), table[1].split()
    assert header[:7] == ["NAME", "WORKERS", "READY", "MEMORY", "SPILL", "SPILL-SIZE", "PHASE"]
    assert row[:7] == [POOL, str(WORKERS), str(WORKERS), WORKER_MEMORY, "Disk", SPILL_SIZE,
                       "Running"]
    assert ready_workers(kube, WORKERS)


def test_pods_carry_the_operators_translation(kube: Kube, pool: dict[str, Any]) -> None:
    """What runs is what `memkube operator render` says: command, resources, spill volume."""
    from memkube_operator.cli import render_objects
    from memkube_operator.settings import PodDefaults

    defaults = PodDefaults(image=pool["spec"]["image"])
    rendered = render_objects([copy.deepcopy(pool)], NS, defaults)
    template = next(
        o for o in rendered if o["metadata"].get("generateName", "").startswith(f"{POOL}-worker-")
    )
    (want,) = template["spec"]["containers"]
    want_spill = next(v for v in template["spec"]["volumes"] if v["name"] == "spill")
    workers = live_workers(kube)
    assert len(workers) == WORKERS
    for pod in workers:
        (container,) = pod["spec"]["containers"]
        assert container["command"] == want["command"]
        assert container["resources"] == want["resources"]
        assert next(v for v in pod["spec"]["volumes"] if v["name"] == "spill") == want_spill
        resources = container["resources"]
        assert resources["limits"]["memory"] == resources["requests"]["memory"] == POD_MEMORY
        assert want_spill["emptyDir"]["sizeLimit"] == SPILL_SIZE
        assert pod["status"]["qosClass"] == "Guaranteed"
    status = kube.get("workerpool", POOL, NS)["status"]
    assert status["derived"]["podMemory"] == POD_MEMORY


def test_inside_a_worker_the_limits_are_the_pods(kube: Kube, session: Session) -> None:
    """The kernel's limit on the container is limits.memory; the worker's is memoryLimit."""
    read_limit = (
        "if [ -f /sys/fs/cgroup/memory.max ]; then cat /sys/fs/cgroup/memory.max; "
        "else cat /sys/fs/cgroup/memory/memory.limit_in_bytes; fi"
    )
    by_name = {w["name"]: w for w in session.pool_snapshot()["workers"]}
    for pod in live_workers(kube):
        name = pod["metadata"]["name"]
        limit = kube.kubectl("exec", "-n", NS, name, "--", "sh", "-c", read_limit).strip()
        assert int(limit) == mebibytes(POD_MEMORY) * MI, name
        mounts = kube.kubectl("exec", "-n", NS, name, "--", "cat", "/proc/self/mountinfo")
        assert any(line.split()[4] == "/spill" for line in mounts.splitlines()), name
        spill = next(v for v in pod["spec"]["volumes"] if v["name"] == "spill")
        assert spill["emptyDir"]["sizeLimit"] == SPILL_SIZE
        assert by_name[name]["memory"]["limit"] == mebibytes(WORKER_MEMORY) * MI


def test_a_computation_larger_than_memory_spills_and_stays_correct(
    kube: Kube, session: Session, blocks: list[Any], expected: dict[int, str]
) -> None:
    pool_memory = WORKERS * mebibytes(WORKER_MEMORY) * MI
    assert BLOCK * BLOCKS >= 3 * pool_memory
    digests = session.client.gather(session.client.map(digest, blocks))
    assert dict(enumerate(digests)) == expected
    snapshot = session.pool_snapshot()
    assert snapshot["memory"]["spilled"] > 0
    # Spilled, not died: no worker was restarted for memory and nothing was recomputed.
    lost = [e for e in snapshot["events"] if e["kind"] in ("memory-restart", "key-lost")]
    assert not lost, lost[:5]
    assert all(w["memory_restarts"] == 0 for w in snapshot["workers"])
    limit = max(w["memory"]["limit"] for w in snapshot["workers"])
    assert all(w["memory"]["managed"] <= limit for w in snapshot["workers"])
    status = kube.wait_until(
        "spilled bytes in the WorkerPool's status",
        lambda: (s := kube.get("workerpool", POOL, NS)["status"])
        and (s.get("memory") or {}).get("spilled", 0) > 0
        and s,
        timeout=180,
    )
    assert status["memory"]["spilled"] > 0


def _pods(kube: Kube, pool: str) -> list[dict[str, Any]]:
    selector = f"memkube.dev/pool={pool},app.kubernetes.io/component=worker"
    return [p for p in kube.get("pods", namespace=NS, selector=selector)
            if not p["metadata"].get("deletionTimestamp")]


def _ready(kube: Kube, pool: str, n: int) -> list[dict[str, Any]] | None:
    pods = _pods(kube, pool)
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in p["status"].get("conditions", []))]
    return ready if len(pods) == n and len(ready) == n else None


def _nodes_holding(kube: Kube, twin: Session, futures: list[Any]) -> dict[str, set[str]]:
    """For each key, the nodes (pods' spec.nodeName) of the workers holding it."""
    node_of_pod = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in _pods(kube, TWIN_POOL)}
    pod_of_address = {w["address"]: w["name"] for w in twin.pool_snapshot()["workers"]}
    who_has = twin.client.who_has(futures)
    return {
        key: {node_of_pod[pod_of_address[a]] for a in addresses
              if pod_of_address.get(a) in node_of_pod}
        for key, addresses in who_has.items()
    }


@pytest.fixture(scope="module")
def twin(kube: Kube, pool: dict[str, Any]) -> Iterator[Session]:
    """The two-node pool with replication factor 2, and a client of it."""
    import memkube

    kube.apply(twin_pool(pool["spec"]["image"]))
    kube.wait(f"workerpool/{TWIN_POOL}", "condition=Ready", NS, timeout=600)
    token = kube.secret_value(f"{TWIN_POOL}-token", "token", NS)
    with kube.port_forward(f"svc/{TWIN_POOL}-scheduler", 8786, NS) as port, \
            memkube.Client(f"tcp://127.0.0.1:{port}", token=token) as client:
        yield Session(client, port, token)


def test_every_value_has_copies_on_both_nodes_and_survives_losing_one(
    kube: Kube, twin: Session, expected: dict[int, str]
) -> None:
    nodes = {p["spec"]["nodeName"] for p in _pods(kube, TWIN_POOL)}
    assert len(nodes) == 2
    futures = list(twin.client.map(make_block, range(TWIN_BLOCKS)))

    def replicated() -> dict[str, set[str]] | None:
        holding = _nodes_holding(kube, twin, futures)
        return holding if all(found == nodes for found in holding.values()) else None

    holding = kube.wait_until("both nodes holding every value", replicated, timeout=300)
    assert len(holding) == TWIN_BLOCKS
    lost_before = len(twin.recomputed())
    victim = min(nodes)
    doomed = [p["metadata"]["name"] for p in _pods(kube, TWIN_POOL)
              if p["spec"]["nodeName"] == victim]
    kube.kubectl("delete", "pod", "-n", NS, "--grace-period=0", "--force", *doomed)
    digests = twin.client.gather(twin.client.map(digest, futures))
    assert digests == [expected[i] for i in range(TWIN_BLOCKS)]
    assert len(twin.recomputed()) == lost_before
    kube.wait_until("the pool back to two workers", lambda: _ready(kube, TWIN_POOL, 2),
                    timeout=600)
    kube.kubectl("delete", "workerpool", TWIN_POOL, "-n", NS, "--wait=true", timeout=300)


def test_scale_down_retires_exactly_one_worker_and_loses_nothing(
    kube: Kube, session: Session, blocks: list[Any], expected: dict[int, str]
) -> None:
    before = {p["metadata"]["name"] for p in live_workers(kube)}
    lost_before = len(session.recomputed())
    kube.kubectl("scale", f"workerpool/{POOL}", f"--replicas={WORKERS - 1}", "-n", NS)
    kube.wait(f"workerpool/{POOL}", f"jsonpath={{.status.replicas}}={WORKERS - 1}", NS,
              timeout=600)
    after = kube.wait_until(
        "one worker pod fewer", lambda: ready_workers(kube, WORKERS - 1), timeout=300
    )
    names = {p["metadata"]["name"] for p in after}
    (gone,) = before - names
    assert names < before
    events = kube.get("events", namespace=NS)
    assert any(e.get("reason") == "Retired" and gone in e.get("message", "") for e in events)
    digests = session.client.gather(session.client.map(digest, blocks))
    assert dict(enumerate(digests)) == expected
    assert len(session.recomputed()) == lost_before


def test_no_worker_was_oom_killed(kube: Kube, session: Session) -> None:
    for pod in kube.get("pods", namespace=NS, selector=f"memkube.dev/pool={POOL}"):
        for status in pod["status"].get("containerStatuses", []):
            last = status.get("lastState", {}).get("terminated") or {}
            assert last.get("reason") != "OOMKilled", pod["metadata"]["name"]
    assert kube.get("workerpool", POOL, NS)["status"].get("oomKills", 0) == 0
