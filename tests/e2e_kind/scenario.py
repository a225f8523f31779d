"""The kind e2e scenario's manifests and sizes, in one place so they can be checked offline.

test_kind_e2e.py runs them on a real cluster; test_kind_scenario.py checks, on any machine,
that they are valid, that the pool fits a CI runner, and that the numbers really force
spilling (the data is larger than the workers' memory) and an OOM kill in a plain pod
(the data is larger than its memory limit).
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
SPILL_SIZE = "2Gi"
BLOCK = 32 * 2**20
BLOCKS = 32  # 1 GiB: more than the workers may hold together, and than a pod's limit


def e2e_pool(image: str) -> dict[str, Any]:
    """examples/workerpool.yaml with sizes a CI runner can hold, running ``image``."""
    body = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "workerpool.yaml").read_text()))
    body["metadata"]["namespace"] = NS
    spec = body["spec"]
    spec.update(replicas=WORKERS, image=image, imagePullPolicy="Never")
    spec["worker"].update(
        memoryLimit=WORKER_MEMORY, memoryOverhead=WORKER_OVERHEAD, cpu="250m", threads=1
    )
    spec["worker"]["spill"].update(medium="Disk", size=SPILL_SIZE)
    spec["scheduler"].update(memory="256Mi", cpu="250m")
    spec["podTemplate"].pop("nodeSelector", None)
    return body


def plain_pod(image: str) -> dict[str, Any]:
    """A pod with a worker's memory limit that holds the same blocks in plain Python."""
    hold = (
        "import random\n"
        f"blocks = [random.Random(i).randbytes({BLOCK}) for i in range({BLOCKS})]\n"
        "print(len(blocks))\n"
    )
    limits = {"memory": POD_MEMORY, "cpu": "250m"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain-python", "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
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
