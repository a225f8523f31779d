"""The kind e2e scenarios' manifests and sizes, in one place so they can be checked offline.

Sized for a machine of 2 cores and 24 GiB (and a hosted runner): one control plane and two
worker nodes (hack/kind/cluster.yaml).

test_kind_e2e.py runs the main pool's story, test_kind_faults.py the fault scenarios;
test_kind_scenario.py checks, on any machine, that the manifests are valid, that the pools
fit, and that the numbers really force spilling (the data is three times the pool's memory)
and an OOM kill where the memory manager is off (the data is larger than the pod's limit).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
NS = "e2e"
POOL = "etl"
WORKERS = 3
WORKER_MEMORY = "256Mi"  # each worker's --memory-limit
WORKER_OVERHEAD = "256Mi"
POD_MEMORY = "512Mi"  # what the operator should translate the two above into
SPILL_SIZE = "4Gi"
# Blocks small beside a worker's limit (1/32), so a worker receiving a few at once stays
# under it; 288 of them, 2.25 GiB: three times what the pool's workers may hold together.
BLOCK = 8 * 2**20
BLOCKS = 288

# Replication across nodes: a two-worker pool, one worker per node, every value on both.
TWIN_POOL, TWIN_BLOCKS = "twin", 8  # 8 blocks of 8 MiB: 64 MiB, within what each worker keeps in memory

# The fault scenarios: their own namespace and small pools.
FAULTS_NS = "e2e-faults"
OOM_BLOCKS = 80  # 640 MiB held by one worker whose pod may have 512 MiB
GROW_POOL, GROW_FROM, GROW_TO = "grow", 1, 4


def _worker_pods(pool: str) -> dict[str, Any]:
    return {"matchLabels": {"memkube.dev/pool": pool, "app.kubernetes.io/component": "worker"}}


def e2e_pool(image: str) -> dict[str, Any]:
    """examples/workerpool.yaml with sizes a small machine can hold, running ``image``.

    Replication factor 1: with two copies of three times the pool's memory, a restarted
    worker's re-replication fetches more at once than its limit (see twin_pool). Worker pods
    are spread over the two worker nodes."""
    body = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "workerpool.yaml").read_text()))
    body["metadata"]["namespace"] = NS
    spec = body["spec"]
    spec.update(replicas=WORKERS, image=image, imagePullPolicy="Never", replication={"factor": 1})
    spec["worker"].update(
        memoryLimit=WORKER_MEMORY, memoryOverhead=WORKER_OVERHEAD, cpu="500m", threads=1
    )
    spec["worker"]["spill"].update(medium="Disk", size=SPILL_SIZE)
    spec["scheduler"].update(memory="256Mi", cpu="250m")
    template = spec["podTemplate"]
    template.pop("nodeSelector", None)
    template["affinity"] = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": _worker_pods(POOL),
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    return body


def twin_pool(image: str) -> dict[str, Any]:
    """Two workers on different nodes with replication factor 2 (the example's factor)."""
    body = e2e_pool(image)
    body["metadata"]["name"] = TWIN_POOL
    spec = body["spec"]
    spec.update(replicas=2, replication={"factor": 2})
    spec["worker"]["cpu"] = "250m"
    spec["scheduler"]["cpu"] = "100m"
    term = spec["podTemplate"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    term["labelSelector"] = _worker_pods(TWIN_POOL)
    # Required, so the two workers never share a node. The pool's scheduler pod carries the
    # same term (podTemplate applies to it too), so it needs a third node: the control plane.
    spec["podTemplate"]["affinity"] = {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    }
    spec["podTemplate"]["tolerations"].append(
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
         "effect": "NoSchedule"}
    )
    return body


def small_pool(image: str, name: str, replicas: int, memory_manager: bool) -> dict[str, Any]:
    """A pool of ``replicas`` workers of the main pool's size; ``memory_manager=False`` switches
    every threshold off, so the worker holds what it is given until the kernel says no."""
    body = e2e_pool(image)
    body["metadata"].update(name=name, namespace=FAULTS_NS)
    spec = body["spec"]
    spec.update(replicas=replicas, replication={"factor": 1})
    spec["worker"]["cpu"] = "250m"
    spec["worker"]["spill"]["size"] = "2Gi"
    spec["scheduler"].update(memory="256Mi", cpu="100m")
    spec["podTemplate"].pop("affinity")
    if not memory_manager:
        spec["worker"]["thresholds"] = {
            "target": None, "spill": None, "pause": None, "terminate": None
        }
    return body


def plain_pod(image: str) -> dict[str, Any]:
    """A pod with a worker's memory limit that holds the same blocks in plain Python."""
    hold = (
        "import random\n"
        f"blocks = [random.Random(i).randbytes({BLOCK}) for i in range({OOM_BLOCKS})]\n"
        "print(len(blocks))\n"
    )
    limits = {"memory": POD_MEMORY, "cpu": "250m"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain-python", "namespace": FAULTS_NS},
        "spec": {
            # OnFailure: containerd can report a kernel OOM kill as "Error" when the exit
            # event beats the OOM event (containerd issues 8180, 8893); a rerun shows it.
            "restartPolicy": "OnFailure",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "python",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", hold],
                    "resources": {"requests": dict(limits), "limits": dict(limits)},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
