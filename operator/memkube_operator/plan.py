"""The reconcile plan: what to do next for one pool, decided without I/O.

Given the validated spec, the desired worker pod hash and the pods that exist, :func:`plan`
returns one step towards convergence. Running it again after the step (or after a crash
halfway through) yields the rest, so the operator is idempotent by construction.

The rules, in order:

- missing Secret, scheduler pod or Service are created (never replaced: the token and the
  scheduler's state must survive);
- finished pods (Failed/Succeeded, e.g. evicted) are deleted: they hold nothing and count
  for nothing;
- too few live workers: create the difference (capped per pass);
- too many: surplus pods that hold nothing (never started, or restarted and not ready)
  are deleted directly; the rest are *retired* through the scheduler, outdated pods by name
  first, else ``n`` chosen by the scheduler (least unique data);
- the right count but some pods are outdated: outdated pods that are not ready and hold
  nothing (never started, or restarted) are deleted and recreated; otherwise, once all are
  ready, one surge pod is created and the resulting surplus retires one outdated pod by
  name, so data moves instead of being lost.

Not covered: carrying the plan out (:mod:`reconcile`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .observe import PodView


@dataclass(frozen=True)
class Plan:
    """One reconcile step. ``retire_names`` and ``retire_count`` go to the scheduler."""

    create_workers: int = 0
    delete_now: tuple[str, ...] = ()
    retire_names: tuple[str, ...] = ()
    retire_count: int = 0
    waiting: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def retires(self) -> bool:
        """Whether this step asks the scheduler to retire workers."""
        return bool(self.retire_names) or self.retire_count > 0

    @property
    def idle(self) -> bool:
        """Nothing to do for the workers."""
        return not (self.create_workers or self.delete_now or self.retires or self.waiting)


def live_workers(pods: Sequence[PodView]) -> list[PodView]:
    """Pods that count towards replicas: not being deleted, not finished."""
    return [p for p in pods if not p.deleting and not p.finished]


def plan(replicas: int, desired_hash: str, pods: Sequence[PodView], *, max_creates: int) -> Plan:
    """The next step for worker pods (newest pods are the first to go when the scheduler
    does not choose)."""
    finished = tuple(p.name for p in pods if p.finished and not p.deleting)
    live = sorted(live_workers(pods), key=lambda p: p.created)
    outdated = [p for p in live if p.spec_hash != desired_hash]
    current = [p for p in live if p.spec_hash == desired_hash]
    if len(live) < replicas:
        return Plan(create_workers=min(replicas - len(live), max_creates), delete_now=finished)
    if len(live) > replicas:
        return _shrink(len(live) - replicas, outdated, current, finished)
    if outdated and replicas:
        # Outdated pods that hold nothing (never started, or down after a crash) go at once:
        # a spec change that fixes a broken pool must not wait for it to become ready.
        broken = tuple(p.name for p in outdated if not p.ready and _holds_nothing(p))
        if broken:
            return Plan(delete_now=finished + broken, notes=["replacing broken outdated pods"])
        if all(p.ready for p in live):
            return Plan(create_workers=1, delete_now=finished, notes=["rolling one pod"])
        return Plan(delete_now=finished, waiting="waiting for worker pods to be ready to roll")
    return Plan(delete_now=finished)


def _holds_nothing(pod: PodView) -> bool:
    """A pod whose worker never ran, or restarted (its memory is gone: the scheduler has
    already recovered what it held), has nothing to retire."""
    return not pod.started or pod.restart_count > 0


def _shrink(
    surplus: int, outdated: list[PodView], current: list[PodView], finished: tuple[str, ...]
) -> Plan:
    if outdated:
        # Rolling or scaling down during a roll: only outdated pods go.
        unstarted = [p.name for p in outdated if not p.started][:surplus]
        remaining = surplus - len(unstarted)
        if remaining and any(not p.ready for p in current):
            return Plan(
                delete_now=finished + tuple(unstarted),
                waiting="waiting for new worker pods to be ready before retiring old ones",
            )
        names = tuple(p.name for p in outdated if p.started)[:remaining]
        leftover = remaining - len(names)
        return Plan(
            delete_now=finished + tuple(unstarted), retire_names=names, retire_count=leftover
        )
    # Plain scale-down: pods that hold nothing first, newest first; the scheduler picks
    # the rest by the data they hold.
    unstarted = [p.name for p in reversed(current) if not p.ready and _holds_nothing(p)][:surplus]
    return Plan(delete_now=finished + tuple(unstarted), retire_count=surplus - len(unstarted))
