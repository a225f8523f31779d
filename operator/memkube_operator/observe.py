"""What the operator reads off a pod: a small frozen view, so planning and status are pure.

Not covered: fetching pods (:mod:`kube`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import naming


@dataclass(frozen=True)
class PodView:
    """The facts about one pod that reconciling and status need."""

    name: str
    phase: str
    ready: bool
    started: bool
    deleting: bool
    spec_hash: str | None
    created: str
    restart_count: int
    last_oom: bool

    @property
    def finished(self) -> bool:
        """Failed or Succeeded (for instance evicted): it will never run again."""
        return self.phase in ("Failed", "Succeeded")


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """Read a pod manifest as returned by the API server."""
    meta = pod.get("metadata", {})
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    started = ready or any(
        "running" in (c.get("state") or {}) or c.get("restartCount", 0) > 0 for c in containers
    )
    last_oom = any(
        ((c.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
        for c in containers
    )
    return PodView(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase", "Pending")),
        ready=ready,
        started=started,
        deleting=meta.get("deletionTimestamp") is not None,
        spec_hash=(meta.get("annotations") or {}).get(naming.SPEC_HASH_ANNOTATION),
        created=str(meta.get("creationTimestamp", "")),
        restart_count=sum(int(c.get("restartCount", 0)) for c in containers),
        last_oom=last_oom,
    )
