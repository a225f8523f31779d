"""Pure manifest builders: a validated :class:`~memkube_operator.spec.PoolSpec` in, plain
dicts out, ready for the API server. No I/O, so they are unit-tested and validated against
the Kubernetes schemas offline, and ``memkube operator render`` prints exactly what the
operator would create.
"""

from __future__ import annotations

from ..settings import PodDefaults
from ..spec import PoolSpec
from .common import Manifest
from .scheduler import build_scheduler_pod, build_scheduler_service
from .secret import build_token_secret
from .worker import build_worker_pod, spec_hash

__all__ = [
    "Manifest",
    "build_all",
    "build_scheduler_pod",
    "build_scheduler_service",
    "build_token_secret",
    "build_worker_pod",
    "spec_hash",
]


def build_all(
    pool: PoolSpec, defaults: PodDefaults, token: str, metrics_token: str | None = None
) -> list[Manifest]:
    """Every object of a pool in creation order: Secret, scheduler, Service, worker pods."""
    objects = [
        build_token_secret(pool, token, metrics_token),
        build_scheduler_pod(pool, defaults),
        build_scheduler_service(pool),
    ]
    objects.extend(build_worker_pod(pool, defaults) for _ in range(pool.replicas))
    return objects
