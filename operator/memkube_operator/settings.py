"""The operator's settings: typed values read once and passed down.

Grouped like kopf's ``OperatorSettings``: each attribute says its unit and why its default.
The CLI fills them from flags and environment variables; tests construct them directly (for
instance pointing :attr:`SchedulerAccess.url` at a scheduler process on 127.0.0.1).

Not covered: kopf's own settings (watch timeouts, peering), which :mod:`handlers` sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_IMAGE = "ghcr.io/memkube/memkube:0.1.0"
SCHEDULER_PORT = 8786
WORKER_PORT = 8788


def service_dns_url(namespace: str, service: str, port: int) -> str:
    """The in-cluster URL of a Service: how a real operator pod reaches the scheduler."""
    return f"http://{service}.{namespace}.svc:{port}"


@dataclass(frozen=True)
class PodDefaults:
    """What every pod gets unless the WorkerPool says otherwise."""

    image: str = DEFAULT_IMAGE
    """Image for scheduler and workers when ``spec.image`` is empty (one image, three roles)."""

    run_as_user: int = 1000
    """UID (and GID, fsGroup) the containers run as; the image must not need root."""

    scratch_size: str = "256Mi"
    """Size of the writable ``/tmp`` emptyDir (the root filesystem is read-only)."""

    termination_grace_seconds: int = 60
    """Pod grace period: a worker's own retirement already happened before deletion."""


@dataclass(frozen=True)
class SchedulerAccess:
    """How the operator reaches each pool's scheduler HTTP API."""

    url: Callable[[str, str, int], str] = service_dns_url
    """``(namespace, service name, port) -> base URL``. Tests point it at 127.0.0.1."""

    request_timeout: float = 10.0
    """Seconds for a pool snapshot or an event post; short so a dead scheduler shows quickly."""

    retire_timeout: float = 600.0
    """Seconds to wait for a retirement: moving a worker's unique data can take minutes."""


@dataclass(frozen=True)
class Reconciling:
    """How often and how patiently the operator converges pools."""

    resync_seconds: float = 30.0
    """Period of the timer that reconciles every pool (catches anything a watch missed)."""

    retry_delay: float = 5.0
    """Backoff before retrying after an API conflict or an unreachable scheduler (seconds)."""

    force_scale_down_after: float | None = None
    """Default for ``spec.scaleDown.forceAfterSeconds``: None never deletes unretired pods."""

    max_creates_per_pass: int = 50
    """Pods created in one reconcile; bounds the burst a huge scale-up sends the API."""


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator reads: pod defaults, scheduler access, reconcile timing."""

    pods: PodDefaults = field(default_factory=PodDefaults)
    scheduler: SchedulerAccess = field(default_factory=SchedulerAccess)
    reconciling: Reconciling = field(default_factory=Reconciling)

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means the whole cluster."""

    standalone: bool = True
    """Run without kopf peering (one replica, no peering CRD needed)."""

    metrics_token: str | None = None
    """Token that opens only ``GET /metrics``, written into every new pool's Secret (key
    ``metrics-token``) and so into its pods as ``MEMKUBE_METRICS_TOKEN``; None: none."""

    liveness_endpoint: str | None = None
    """``http://0.0.0.0:8080/healthz`` style URL for the kubelet's liveness probe, or None."""
