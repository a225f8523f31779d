"""memkube on a real Kubernetes cluster (kind): install, compute, spill, scale down, survive.

The story, in order (the tests share one pool and run top to bottom):

1. `helm install` the chart with the image built from this checkout (conftest.py).
2. Apply examples/workerpool.yaml, shrunk to fit a CI runner (scenario.py: 3 workers of
   256Mi instead of 4 of 8Gi, a 2Gi spill disk, no node selector), in a namespace enforcing
   the restricted Pod Security Standard; wait for the pool's Ready condition.
3. The pods carry exactly the operator's translation (`memkube operator render`): memory
   requests = limits = limit + overhead, ephemeral-storage for the spill disk, the flags.
4. Through `kubectl port-forward`, a client persists 1 GiB of incompressible blocks on
   workers that may hold 256 MiB each (twice over: replication factor 2): they spill, and
   every block's checksum computed on the workers is right.
5. `kubectl scale wp/etl --replicas=2`: the operator retires a worker through the scheduler
   before deleting its pod; every block is still there and still right.
6. No worker was OOM-killed; a plain pod with the same memory limit holding the same data
   is OOMKilled by the kernel.

test_kind_scenario.py checks these manifests and numbers offline. Each step is one the rest
of the suite runs against the API double (tests/chart renders and
installs the chart, tests/chart/test_rbac.py and tests/operator/ drive the operator through
create, scale-down and OOM events); here they meet a real kubelet, kernel and network.
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
from scenario import BLOCK, BLOCKS, NS, POD_MEMORY, POOL, SPILL_SIZE, WORKERS, e2e_pool, plain_pod

WORKER_PODS = f"memkube.dev/pool={POOL},app.kubernetes.io/component=worker"

pytestmark = pytest.mark.kind

# The functions below run on the workers: ship them by value, not as imports of this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_block(i: int) -> bytes:
    """Deterministic and incompressible, so spilling really writes it and checks are exact."""
    return random.Random(i).randbytes(BLOCK)


def digest(block: bytes) -> str:
    return hashlib.sha256(block).hexdigest()


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
        storage = resources["limits"]["ephemeral-storage"]
        assert storage == resources["requests"]["ephemeral-storage"]
        assert want_spill["emptyDir"]["sizeLimit"] == SPILL_SIZE
        assert pod["status"]["qosClass"] == "Guaranteed"
    status = kube.get("workerpool", POOL, NS)["status"]
    assert status["derived"]["podMemory"] == POD_MEMORY


def test_a_computation_larger_than_memory_spills_and_stays_correct(
    session: Session, blocks: list[Any], expected: dict[int, str]
) -> None:
    digests = session.client.gather(session.client.map(digest, blocks))
    assert dict(enumerate(digests)) == expected
    snapshot = session.pool_snapshot()
    assert snapshot["memory"]["spilled"] > 0
    limit = max(w["memory"]["limit"] for w in snapshot["workers"])
    assert all(w["memory"]["managed"] <= limit for w in snapshot["workers"])


def test_scale_down_retires_a_worker_and_loses_nothing(
    kube: Kube, session: Session, blocks: list[Any], expected: dict[int, str]
) -> None:
    before = {p["metadata"]["name"] for p in live_workers(kube)}
    kube.kubectl("scale", f"workerpool/{POOL}", "--replicas=2", "-n", NS)
    kube.wait(f"workerpool/{POOL}", "jsonpath={.status.replicas}=2", NS, timeout=600)
    after = kube.wait_until(
        "two worker pods", lambda: (w := live_workers(kube)) and len(w) == 2 and w
    )
    assert {p["metadata"]["name"] for p in after} < before
    events = kube.get("events", namespace=NS)
    assert any(e.get("reason") == "Retired" for e in events)
    digests = session.client.gather(session.client.map(digest, blocks))
    assert dict(enumerate(digests)) == expected


def test_no_worker_was_oom_killed(kube: Kube, session: Session) -> None:
    for pod in kube.get("pods", namespace=NS, selector=f"memkube.dev/pool={POOL}"):
        for status in pod["status"].get("containerStatuses", []):
            last = status.get("lastState", {}).get("terminated") or {}
            assert last.get("reason") != "OOMKilled", pod["metadata"]["name"]
    assert kube.get("workerpool", POOL, NS)["status"].get("oomKills", 0) == 0


def test_a_plain_pod_with_the_same_limit_is_oom_killed(kube: Kube, pool: dict[str, Any]) -> None:
    kube.apply(plain_pod(pool["spec"]["image"]))
    kube.wait("pod/plain-python", "jsonpath={.status.phase}=Failed", NS, timeout=300)
    (status,) = kube.get("pod", "plain-python", NS)["status"]["containerStatuses"]
    assert status["state"]["terminated"]["reason"] == "OOMKilled"
