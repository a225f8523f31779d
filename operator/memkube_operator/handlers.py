"""kopf handlers, registered on a fresh registry per operator: thin calls into the reconciler.

- WorkerPool create/resume/update and a resync timer run one pass (errors go to kopf, which
  retries :class:`kopf.TemporaryError` after its delay and stops on PermanentError);
- events of a pool's pods (deleted by hand, became ready, OOM-killed) poke a coalesced pass;
- startup logs in, builds the API client and the reconciler; cleanup closes the client.

No handler keeps state of its own: :func:`build_registry` closes over the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from . import naming
from .crd import GROUP, PLURAL, VERSION
from .kube import KubeApi, Login
from .reconcile import Reconciler
from .settings import OperatorConfig

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)
DELETION_POLL_SECONDS = 1.0
"""How soon kopf re-checks a deleted pool whose timer was still running a pass."""


def default_login() -> kopf.ConnectionInfo:
    """In-cluster service account or the local kubeconfig, as kopf itself would log in."""
    info = kopf.login_via_client(logger=log, settings=kopf.OperatorSettings())
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials found")
    return info


def configure_kopf(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf keeps its progress in annotations: the CRD's status schema is ours alone."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # A pool deleted while its resync timer is mid-pass: kopf keeps the finalizer until the
    # timer exits and, as timers take no cancellation timeout, looks again only after this
    # many seconds (its default, 60 s, made deletion hang for a minute). Each look is one
    # small patch of the pool, so a short bound is cheap.
    settings.background.cancellation_polling = DELETION_POLL_SECONDS
    settings.peering.standalone = config.standalone


def build_registry(
    config: OperatorConfig,
    login: Login = default_login,
    reconcilers: list[Reconciler] | None = None,
) -> kopf.OperatorRegistry:
    """A registry with every handler, bound to ``config`` and ``login``.

    ``reconcilers`` (tests, benchmarks) receives the reconciler once the operator starts.
    """
    registry = kopf.OperatorRegistry()
    state: dict[str, Reconciler] = {}

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, config)
        state["reconciler"] = Reconciler(KubeApi(login), config)
        if reconcilers is not None:
            reconcilers.append(state["reconciler"])

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        if "reconciler" in state:
            await state["reconciler"].close()

    @kopf.on.login(registry=registry)
    def authenticate(**_: Any) -> kopf.ConnectionInfo:
        return login()

    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.resume(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    async def converge(namespace: str | None, name: str, **_: Any) -> None:
        assert namespace is not None  # WorkerPools are namespaced
        await state["reconciler"].reconcile(namespace, name)

    @kopf.timer(*RESOURCE, interval=config.reconciling.resync_seconds, idle=0, registry=registry)
    async def resync(namespace: str | None, name: str, **_: Any) -> None:
        assert namespace is not None
        await state["reconciler"].reconcile(namespace, name)

    @kopf.on.delete(*RESOURCE, optional=True, registry=registry)
    async def forget(namespace: str | None, name: str, **_: Any) -> None:
        assert namespace is not None
        state["reconciler"].forget(namespace, name)

    @kopf.on.event("v1", "pods", labels={naming.POOL_LABEL: kopf.PRESENT}, registry=registry)
    async def pod_changed(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        if "reconciler" in state and namespace is not None:
            state["reconciler"].poke(namespace, labels[naming.POOL_LABEL])

    return registry
