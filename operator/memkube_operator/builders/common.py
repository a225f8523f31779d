"""Pieces shared by the scheduler and worker pods: metadata, security, env, placement.

Every pod runs as a non-root user with a read-only root filesystem, no capabilities, no
privilege escalation and the runtime's default seccomp profile; ``/tmp`` is a small
emptyDir since the root filesystem is read-only. The pool token reaches containers only
through a ``secretKeyRef``, never inline.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from .. import naming
from ..settings import PodDefaults
from ..spec import PoolSpec

SCRATCH_VOLUME = "scratch"
TOKEN_KEY = "token"
METRICS_TOKEN_KEY = "metrics-token"


class ObjectMeta(TypedDict, total=False):
    """The subset of metadata the operator sets."""

    name: str
    generateName: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[naming.OwnerReference]


class Manifest(TypedDict):
    """A Kubernetes object as sent to the API server."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: NotRequired[dict[str, Any]]
    type: NotRequired[str]
    data: NotRequired[dict[str, str]]


def metadata(pool: PoolSpec, component: str, *, name: str | None = None) -> ObjectMeta:
    """Namespace, labels and the controller reference; ``name`` or the worker generateName."""
    meta = ObjectMeta(
        namespace=pool.namespace,
        labels=naming.labels(pool.name, component),
        ownerReferences=[naming.owner_reference(pool.name, pool.uid)],
    )
    if name is None:
        meta["generateName"] = naming.worker_prefix(pool.name)
    else:
        meta["name"] = name
    return meta


def pod_metadata(pool: PoolSpec, component: str, *, name: str | None = None) -> ObjectMeta:
    """Pod metadata: the template's labels and annotations under the operator's own."""
    meta = metadata(pool, component, name=name)
    meta["labels"] = {**pool.pod_template.labels, **meta["labels"]}
    if pool.pod_template.annotations:
        meta["annotations"] = dict(pool.pod_template.annotations)
    return meta


def pod_security(defaults: PodDefaults) -> dict[str, Any]:
    """Pod-level securityContext: a fixed non-root identity owning its volumes."""
    uid = defaults.run_as_user
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    """Container securityContext: read-only root, no capabilities, no escalation."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def base_env(pool: PoolSpec) -> list[dict[str, Any]]:
    """The tokens from the pool's Secret and the pod's identity from the downward API.

    The metrics token is optional: the Secret holds it only when the operator was given one
    (the chart's ``metrics.*.tokenSecret``), and without it ``/metrics`` takes the pool token.
    """
    return [
        {
            "name": "MEMKUBE_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": naming.secret_name(pool.name), "key": TOKEN_KEY}
            },
        },
        {
            "name": "MEMKUBE_METRICS_TOKEN",
            "valueFrom": {
                "secretKeyRef": {
                    "name": naming.secret_name(pool.name),
                    "key": METRICS_TOKEN_KEY,
                    "optional": True,
                }
            },
        },
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("POD_IP", "status.podIP"),
        _field_env("NODE_NAME", "spec.nodeName"),
    ]


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def scratch_volume(defaults: PodDefaults) -> dict[str, Any]:
    """The writable /tmp."""
    return {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": defaults.scratch_size}}


def http_probe(path: str, port: str, *, period: int, failures: int) -> dict[str, Any]:
    """An HTTP probe; generous timeouts since a worker under memory pressure answers slowly."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def pod_spec_extras(pool: PoolSpec) -> dict[str, Any]:
    """Placement and identity fields copied from ``spec.podTemplate`` (only those set)."""
    template = pool.pod_template
    extras: dict[str, Any] = {}
    if template.node_selector:
        extras["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        extras["tolerations"] = [dict(t) for t in template.tolerations]
    if template.affinity:
        extras["affinity"] = dict(template.affinity)
    if template.priority_class:
        extras["priorityClassName"] = template.priority_class
    if template.service_account:
        extras["serviceAccountName"] = template.service_account
    if template.image_pull_secrets:
        extras["imagePullSecrets"] = [{"name": n} for n in template.image_pull_secrets]
    return extras


def container_image(pool: PoolSpec, defaults: PodDefaults) -> dict[str, Any]:
    """``image`` and, when the spec sets one, ``imagePullPolicy``."""
    image: dict[str, Any] = {"image": pool.image or defaults.image}
    if pool.pull_policy:
        image["imagePullPolicy"] = pool.pull_policy
    return image
