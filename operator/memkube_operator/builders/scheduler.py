"""The scheduler pod and its Service.

A single pod named ``<pool>-scheduler`` (the operator recreates it if it disappears) behind
a Service of the same name: port 8786 carries workers' and clients' websockets, the HTTP
API the operator calls, the dashboard and ``/metrics``.

Not covered: scheduler high availability (the scheduler holds the pool's state in memory).
"""

from __future__ import annotations

from typing import Any

from memkube.quantity import format_bytes, format_cpu

from .. import naming
from ..settings import SCHEDULER_PORT, PodDefaults
from ..spec import PoolSpec
from .common import (
    SCRATCH_VOLUME,
    Manifest,
    base_env,
    container_image,
    container_security,
    http_probe,
    metadata,
    pod_metadata,
    pod_security,
    pod_spec_extras,
    scratch_volume,
)
from .worker import spec_hash

PORT_NAME = "scheduler"


def scheduler_args(pool: PoolSpec) -> list[str]:
    """``memkube scheduler`` as docs/internals.md specifies."""
    return [
        "memkube",
        "scheduler",
        "--host",
        "0.0.0.0",
        "--port",
        str(SCHEDULER_PORT),
        "--replication-factor",
        str(pool.replication_factor),
    ]


def build_scheduler_pod(pool: PoolSpec, defaults: PodDefaults) -> Manifest:
    """The scheduler pod, Guaranteed QoS (requests = limits)."""
    sizes = {
        "cpu": format_cpu(pool.scheduler.cpu),
        "memory": format_bytes(pool.scheduler.memory),
        "ephemeral-storage": defaults.scratch_size,
    }
    container: dict[str, Any] = {
        "name": "scheduler",
        **container_image(pool, defaults),
        "command": scheduler_args(pool),
        "ports": [{"name": PORT_NAME, "containerPort": SCHEDULER_PORT, "protocol": "TCP"}],
        "env": base_env(pool),
        "resources": {"requests": dict(sizes), "limits": dict(sizes)},
        "livenessProbe": http_probe("/health", PORT_NAME, period=10, failures=6),
        "readinessProbe": http_probe("/ready", PORT_NAME, period=5, failures=3),
        "securityContext": container_security(),
        "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": "/tmp"}],
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Always",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(defaults),
        "containers": [container],
        "volumes": [scratch_volume(defaults)],
        **pod_spec_extras(pool),
    }
    meta = pod_metadata(pool, naming.SCHEDULER, name=naming.scheduler_name(pool.name))
    annotations = dict(meta.get("annotations", {}))
    annotations[naming.SPEC_HASH_ANNOTATION] = spec_hash(spec, meta.get("labels", {}), annotations)
    meta["annotations"] = annotations
    return Manifest(apiVersion="v1", kind="Pod", metadata=meta, spec=spec)


def build_scheduler_service(pool: PoolSpec) -> Manifest:
    """The Service in front of the scheduler pod."""
    spec: dict[str, Any] = {
        "type": pool.scheduler.service_type,
        "selector": {
            naming.POOL_LABEL: pool.name,
            naming.COMPONENT_LABEL: naming.SCHEDULER,
        },
        "ports": [
            {"name": "memkube", "port": SCHEDULER_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}
        ],
    }
    return Manifest(
        apiVersion="v1",
        kind="Service",
        metadata=metadata(pool, naming.SCHEDULER, name=naming.scheduler_name(pool.name)),
        spec=spec,
    )
