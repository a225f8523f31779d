"""Worker pods, one object per worker, with the memory translation applied.

A worker pod's flags follow docs/internals.md "Worker CLI" exactly; its resources come from
:func:`memkube_operator.translate.translate`. Each pod carries a hash of everything the
spec determines, so the reconciler can tell outdated pods and roll them one by one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from memkube.quantity import format_bytes, format_cpu, parse_bytes

from .. import naming
from ..settings import WORKER_PORT, PodDefaults
from ..spec import PoolSpec, Thresholds
from ..translate import WorkerResources, translate
from .common import (
    SCRATCH_VOLUME,
    Manifest,
    base_env,
    container_image,
    container_security,
    http_probe,
    pod_metadata,
    pod_security,
    pod_spec_extras,
    scratch_volume,
)

SPILL_VOLUME = "spill"
SPILL_DIR = "/spill"
PORT_NAME = "worker"


def worker_resources(pool: PoolSpec, defaults: PodDefaults) -> WorkerResources:
    """The translation for this pool's workers (also written to ``status.derived``)."""
    return translate(pool.worker, parse_bytes(defaults.scratch_size))


def worker_args(pool: PoolSpec, resources: WorkerResources) -> list[str]:
    """The container command: ``memkube worker`` with every memory flag spelled out."""
    worker = pool.worker
    thresholds = _thresholds(worker.thresholds, spilling=worker.spill.medium != "None")
    args = [
        "memkube",
        "worker",
        naming.scheduler_address(pool.name, pool.namespace),
        "--name",
        "$(POD_NAME)",
        "--host",
        "0.0.0.0",
        "--port",
        str(WORKER_PORT),
        "--contact-address",
        f"tcp://$(POD_IP):{WORKER_PORT}",
        "--nthreads",
        str(resources.threads),
        "--memory-limit",
        format_bytes(resources.memory_limit),
    ]
    for name in ("target", "spill", "pause", "terminate"):
        args += [f"--memory-{name}", thresholds[name]]
    if resources.max_spill is not None:
        args += [
            "--max-spill",
            format_bytes(resources.max_spill),
            "--spill-dir",
            SPILL_DIR,
            "--spill-compression",
            worker.spill.compression,
        ]
    return args


def _thresholds(thresholds: Thresholds, *, spilling: bool) -> dict[str, str]:
    """Flag values; without a spill volume target and spill are disabled (nowhere to go)."""
    values = {
        "target": thresholds.target if spilling else None,
        "spill": thresholds.spill if spilling else None,
        "pause": thresholds.pause,
        "terminate": thresholds.terminate,
    }
    return {name: "none" if value is None else repr(value) for name, value in values.items()}


def _resources(resources: WorkerResources) -> dict[str, Any]:
    """requests = limits for memory and ephemeral storage; CPU too when cpuLimit is set."""
    requests = {
        "cpu": format_cpu(resources.cpu),
        "memory": format_bytes(resources.pod_memory),
        "ephemeral-storage": format_bytes(resources.ephemeral_storage),
    }
    limits = dict(requests)
    if not resources.cpu_limit:
        del limits["cpu"]
    return {"requests": requests, "limits": limits}


def _spill_volume(pool: PoolSpec) -> dict[str, Any] | None:
    spill = pool.worker.spill
    size = format_bytes(spill.size)
    if spill.medium == "Disk":
        return {"name": SPILL_VOLUME, "emptyDir": {"sizeLimit": size}}
    if spill.medium == "Memory":
        return {"name": SPILL_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size}}
    if spill.medium == "PersistentVolume":
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        }
        if spill.storage_class:
            claim["storageClassName"] = spill.storage_class
        template = {
            "metadata": {"labels": naming.labels(pool.name, naming.WORKER)},
            "spec": claim,
        }
        return {"name": SPILL_VOLUME, "ephemeral": {"volumeClaimTemplate": template}}
    return None


def build_worker_pod(pool: PoolSpec, defaults: PodDefaults) -> Manifest:
    """One worker pod (generateName ``<pool>-worker-``), owned by the WorkerPool."""
    resources = worker_resources(pool, defaults)
    volumes = [scratch_volume(defaults)]
    mounts = [{"name": SCRATCH_VOLUME, "mountPath": "/tmp"}]
    spill = _spill_volume(pool)
    if spill is not None:
        volumes.append(spill)
        mounts.append({"name": SPILL_VOLUME, "mountPath": SPILL_DIR})
    env = base_env(pool) + [{"name": k, "value": v} for k, v in pool.worker.env]
    container: dict[str, Any] = {
        "name": "worker",
        **container_image(pool, defaults),
        "command": worker_args(pool, resources),
        "ports": [{"name": PORT_NAME, "containerPort": WORKER_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": _resources(resources),
        "livenessProbe": http_probe("/health", PORT_NAME, period=10, failures=6),
        "readinessProbe": http_probe("/ready", PORT_NAME, period=5, failures=3),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {
        # A retired (or SIGTERM'd) worker exits 0 and must stay down: with Always the kubelet
        # would restart it and it would rejoin the pool before the operator deletes the pod.
        # Memory restarts (75), OOM kills and crashes are failures and restart in place.
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": defaults.termination_grace_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(defaults),
        "containers": [container],
        "volumes": volumes,
        **pod_spec_extras(pool),
    }
    meta = pod_metadata(pool, naming.WORKER)
    annotations = dict(meta.get("annotations", {}))
    annotations[naming.SPEC_HASH_ANNOTATION] = spec_hash(spec, meta.get("labels", {}), annotations)
    meta["annotations"] = annotations
    return Manifest(apiVersion="v1", kind="Pod", metadata=meta, spec=spec)


def spec_hash(spec: dict[str, Any], labels: dict[str, str], annotations: dict[str, str]) -> str:
    """A short digest of what the WorkerPool determines about a pod; changes trigger a roll."""
    content = {"spec": spec, "labels": labels, "annotations": annotations}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return digest[:16]
