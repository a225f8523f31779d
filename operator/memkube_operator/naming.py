"""Names, labels and owner references of everything the operator creates for a pool.

One place, so builders, the reconciler's label selectors and the status ``selector`` never
disagree. Pure: no I/O.
"""

from __future__ import annotations

from typing import TypedDict

from .crd import API_VERSION, KIND
from .settings import SCHEDULER_PORT

POOL_LABEL = "memkube.dev/pool"
COMPONENT_LABEL = "app.kubernetes.io/component"
SPEC_HASH_ANNOTATION = "memkube.dev/spec-hash"
OOM_SEEN_ANNOTATION = "memkube.dev/oom-seen"
MANAGED_BY = "memkube-operator"
WORKER = "worker"
SCHEDULER = "scheduler"


class OwnerReference(TypedDict):
    """metadata.ownerReferences[]: makes the WorkerPool the controller of a child."""

    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


def scheduler_name(pool: str) -> str:
    """Name of the scheduler pod and its Service."""
    return f"{pool}-scheduler"


def secret_name(pool: str) -> str:
    """Name of the Secret holding the pool token."""
    return f"{pool}-token"


def worker_prefix(pool: str) -> str:
    """generateName of worker pods: the API server appends a random suffix."""
    return f"{pool}-worker-"


def labels(pool: str, component: str) -> dict[str, str]:
    """Labels on every child; the first two select a pool's children of one component."""
    return {
        POOL_LABEL: pool,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/name": "memkube",
        "app.kubernetes.io/instance": pool,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(pool: str, component: str) -> str:
    """A label selector string for one component of a pool (``status.selector`` for workers)."""
    return f"{POOL_LABEL}={pool},{COMPONENT_LABEL}={component}"


def owner_reference(pool: str, uid: str) -> OwnerReference:
    """The reference that lets garbage collection delete a child with its WorkerPool."""
    return OwnerReference(
        apiVersion=API_VERSION,
        kind=KIND,
        name=pool,
        uid=uid,
        controller=True,
        blockOwnerDeletion=True,
    )


def scheduler_address(pool: str, namespace: str) -> str:
    """The address clients and workers connect to inside the cluster."""
    return f"tcp://{scheduler_name(pool)}.{namespace}.svc:{SCHEDULER_PORT}"


def dashboard_url(pool: str, namespace: str) -> str:
    """The dashboard's URL inside the cluster."""
    return f"http://{scheduler_name(pool)}.{namespace}.svc:{SCHEDULER_PORT}/dashboard/"
