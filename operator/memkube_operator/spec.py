"""A WorkerPool's spec as typed values, with the checks the CRD schema cannot make.

:func:`parse_pool` turns a WorkerPool body into a frozen :class:`PoolSpec` or raises
:class:`SpecError` naming the offending field (``spec.worker.thresholds.pause``), which the
operator turns into a condition, an Event and ``kopf.PermanentError``. Everything is checked
before anything is built, so an invalid spec never leaves a half-built pool.

Not covered: building objects (:mod:`builders`) and translating sizes (:mod:`translate`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, cast

from memkube.quantity import QuantityError, parse_bytes, parse_quantity

from .crd import apply_defaults

Medium = Literal["Disk", "Memory", "PersistentVolume", "None"]
MEDIA: tuple[Medium, ...] = ("Disk", "Memory", "PersistentVolume", "None")
THRESHOLDS = ("target", "spill", "pause", "terminate")
# The longest suffix the operator appends is "-scheduler" (10) and generated pod names add
# "-worker-" plus 5 characters; 47 keeps every child name a valid 63-character label.
MAX_NAME = 47
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MIN_MEMORY = 64 * 2**20
MIN_SPILL = 64 * 2**20
RESERVED_ENV = frozenset(
    {"MEMKUBE_TOKEN", "MEMKUBE_METRICS_TOKEN", "POD_NAME", "POD_IP", "NODE_NAME", "POD_NAMESPACE"}
)


class SpecError(ValueError):
    """The spec cannot be built; ``field`` is its path, e.g. ``spec.worker.memoryLimit``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Thresholds:
    """Fractions of the memory limit; None disables one."""

    target: float | None
    spill: float | None
    pause: float | None
    terminate: float | None


@dataclass(frozen=True)
class SpillSpec:
    """The spill volume: medium, size in bytes, class and compression."""

    medium: Medium
    size: int
    storage_class: str | None
    compression: str


@dataclass(frozen=True)
class WorkerSpec:
    """One worker pod's sizing and memory-manager settings."""

    memory_limit: int
    memory_overhead: int | None
    cpu: Fraction
    cpu_limit: bool
    threads: int | None
    thresholds: Thresholds
    spill: SpillSpec
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SchedulerSpec:
    """The scheduler pod's sizing and Service type."""

    memory: int
    cpu: Fraction
    service_type: str


@dataclass(frozen=True)
class PodTemplate:
    """Placement and metadata copied onto every pod of the pool."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    affinity: Mapping[str, Any] | None
    priority_class: str | None
    service_account: str | None
    image_pull_secrets: tuple[str, ...]


@dataclass(frozen=True)
class PoolSpec:
    """A validated WorkerPool: identity plus every field the builders need."""

    name: str
    namespace: str
    uid: str
    generation: int
    replicas: int
    image: str | None
    pull_policy: str | None
    worker: WorkerSpec
    replication_factor: int
    scheduler: SchedulerSpec
    force_after_seconds: int | None
    pod_template: PodTemplate


def parse_pool(body: Mapping[str, Any]) -> PoolSpec:
    """Validate a WorkerPool body (defaults applied here too) into a :class:`PoolSpec`."""
    meta = body.get("metadata", {})
    name = str(meta.get("name", ""))
    if len(name) > MAX_NAME or not _DNS_LABEL.match(name):
        raise SpecError(
            "metadata.name",
            f"{name!r} must be a DNS-1035 label of at most {MAX_NAME} characters "
            "(lowercase letters, digits, '-', starting with a letter)",
        )
    spec = apply_defaults({"spec": dict(body.get("spec") or {})})["spec"]
    replicas = _int(spec, "replicas", "spec.replicas", minimum=0)
    factor = _int(spec["replication"], "factor", "spec.replication.factor", minimum=1)
    if replicas and factor > replicas:
        raise SpecError(
            "spec.replication.factor", f"{factor} copies need at least {factor} replicas"
        )
    scaledown = spec["scaleDown"].get("forceAfterSeconds")
    return PoolSpec(
        name=name,
        namespace=str(meta.get("namespace", "default")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation", 0) or 0),
        replicas=replicas,
        image=spec.get("image") or None,
        pull_policy=spec.get("imagePullPolicy") or None,
        worker=_worker(spec["worker"]),
        replication_factor=factor,
        scheduler=_scheduler(spec["scheduler"]),
        force_after_seconds=None if scaledown is None else int(scaledown),
        pod_template=_pod_template(spec["podTemplate"]),
    )


def _worker(worker: Mapping[str, Any]) -> WorkerSpec:
    path = "spec.worker"
    limit = _bytes(worker, "memoryLimit", f"{path}.memoryLimit", minimum=MIN_MEMORY)
    overhead = (
        _bytes(worker, "memoryOverhead", f"{path}.memoryOverhead", minimum=0)
        if worker.get("memoryOverhead") is not None
        else None
    )
    cpu = _cpu(worker.get("cpu", "1"), f"{path}.cpu")
    threads = worker.get("threads")
    if threads is not None:
        threads = _int(worker, "threads", f"{path}.threads", minimum=1)
    env = []
    for index, item in enumerate(worker.get("env") or []):
        env_name = str(item.get("name", ""))
        if env_name in RESERVED_ENV:
            raise SpecError(f"{path}.env[{index}].name", f"{env_name} is set by the operator")
        env.append((env_name, str(item.get("value", ""))))
    return WorkerSpec(
        memory_limit=limit,
        memory_overhead=overhead,
        cpu=cpu,
        cpu_limit=bool(worker.get("cpuLimit", True)),
        threads=threads,
        thresholds=_thresholds(worker["thresholds"], f"{path}.thresholds"),
        spill=_spill(worker["spill"], f"{path}.spill"),
        env=tuple(env),
    )


def _thresholds(values: Mapping[str, Any], path: str) -> Thresholds:
    fractions: dict[str, float | None] = {}
    for key in THRESHOLDS:
        value = values.get(key)
        if value is None or value is False:
            fractions[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise SpecError(f"{path}.{key}", f"{value!r} must be a fraction in (0, 1] or null")
        fractions[key] = float(value)
    enabled = [(key, value) for key, value in fractions.items() if value is not None]
    for (low_key, low), (high_key, high) in itertools.pairwise(enabled):
        if low > high:
            raise SpecError(
                f"{path}.{high_key}",
                f"{high_key} ({high}) must not be below {low_key} ({low}): "
                "target <= spill <= pause <= terminate",
            )
    return Thresholds(**fractions)


def _spill(spill: Mapping[str, Any], path: str) -> SpillSpec:
    medium = spill.get("medium", "Disk")
    if medium not in MEDIA:
        raise SpecError(f"{path}.medium", f"{medium!r} is not one of {', '.join(MEDIA)}")
    size = 0
    if medium != "None":
        size = _bytes(spill, "size", f"{path}.size", minimum=MIN_SPILL)
    return SpillSpec(
        medium=cast(Medium, medium),
        size=size,
        storage_class=spill.get("storageClassName") or None,
        compression=str(spill.get("compression", "auto")),
    )


def _scheduler(scheduler: Mapping[str, Any]) -> SchedulerSpec:
    return SchedulerSpec(
        memory=_bytes(scheduler, "memory", "spec.scheduler.memory", minimum=MIN_MEMORY),
        cpu=_cpu(scheduler.get("cpu", "1"), "spec.scheduler.cpu"),
        service_type=str(scheduler.get("serviceType", "ClusterIP")),
    )


def _pod_template(template: Mapping[str, Any]) -> PodTemplate:
    return PodTemplate(
        labels=dict(template.get("labels") or {}),
        annotations=dict(template.get("annotations") or {}),
        node_selector=dict(template.get("nodeSelector") or {}),
        tolerations=tuple(template.get("tolerations") or ()),
        affinity=template.get("affinity") or None,
        priority_class=template.get("priorityClassName") or None,
        service_account=template.get("serviceAccountName") or None,
        image_pull_secrets=tuple(s["name"] for s in template.get("imagePullSecrets") or ()),
    )


def _int(values: Mapping[str, Any], key: str, path: str, *, minimum: int) -> int:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(path, f"{value!r} must be an integer >= {minimum}")
    return value


def _bytes(values: Mapping[str, Any], key: str, path: str, *, minimum: int) -> int:
    try:
        nbytes = parse_bytes(values[key])
    except (KeyError, QuantityError) as exc:
        raise SpecError(path, f"{values.get(key)!r} is not a size quantity") from exc
    if nbytes < minimum:
        raise SpecError(path, f"{values[key]!r} is below the minimum of {minimum} bytes")
    return nbytes


def _cpu(value: Any, path: str) -> Fraction:
    try:
        cores = parse_quantity(value)
    except QuantityError as exc:
        raise SpecError(path, f"{value!r} is not a CPU quantity") from exc
    if cores < Fraction(1, 100):
        raise SpecError(path, f"{value!r} is below 10m")
    return cores
