"""Deletion: finalizers, propagation policies, garbage collection and namespace/CRD cleanup.

- An object with finalizers gets ``deletionTimestamp`` (and a generation bump where it tracks
  generation) and stays until its finalizers are gone; then it is removed.
- ``propagationPolicy``: Background (default) removes the owner, then the garbage collector
  deletes dependents whose owners are all gone; Foreground puts ``foregroundDeletion`` on the
  owner, deletes dependents and removes the owner once no dependent with
  ``blockOwnerDeletion: true`` is left; Orphan removes the owner's reference from dependents.
- Deleting a namespace deletes everything in it and removes the namespace when it is empty;
  deleting a CRD deletes its custom resources and then the CRD (and stops serving the type).
The garbage collector runs synchronously after each removal and after each write of an object
with owner references (a real one runs shortly after): a dependent whose owners are all absent
(wrong uid, another namespace) is deleted.
Pods are removed at once, unless the double was made with ``graceful_pods=True``: then a pod
bound to a node stays terminating (``deletionTimestamp`` = now + grace period) until the test
plays the kubelet with ``finish_pod_terminations``; ``gracePeriodSeconds=0`` forces removal.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .builtins import tracks_generation
from .errors import ApiError, bad_request, conflict
from .resources import CRD_GROUP_RESOURCE, NAMESPACES, PODS, ResourceType
from .selectors import field_matcher, label_matcher
from .store import Key
from .timestamps import now

if TYPE_CHECKING:
    from .registry import Registry

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
POLICIES = ("Background", "Foreground", "Orphan")


def has_system_finalizer(obj: dict[str, Any]) -> bool:
    """Namespaces finish only when their content is gone (``spec.finalizers``)."""
    return obj.get("kind") == "Namespace" and bool((obj.get("spec") or {}).get("finalizers"))


def delete(reg: Registry, rt: ResourceType, namespace: str, name: str, *,
           propagation: str | None = None, preconditions: dict[str, Any] | None = None,
           dry_run: bool = False, grace_period: int | None = None) -> dict[str, Any]:
    if propagation is not None and propagation not in POLICIES:
        raise bad_request(f"propagationPolicy: Unsupported value: {propagation!r}")
    with reg.store.lock:
        obj = reg.stored(rt, namespace, name)
        meta = obj["metadata"]
        for field, key in (("uid", "uid"), ("resourceVersion", "resourceVersion")):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != meta.get(key):
                raise conflict(rt.plural, rt.group, name,
                               f"Precondition failed: {field.upper() if field == 'uid' else field}"
                               f" in precondition: {wanted}, {field} in object meta: "
                               f"{meta.get(key)}")
        if dry_run:
            return reg.present(rt, obj)
        result = _start_deletion(reg, rt, obj, propagation or "Background", grace_period)
        settle(reg)
        return reg.present(rt, result)


def delete_collection(reg: Registry, rt: ResourceType, namespace: str | None, *,
                      label_selector: str = "", field_selector: str = "",
                      propagation: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    labels = label_matcher(label_selector)
    fields = field_matcher(field_selector, rt.selectable_fields, rt.kind)
    deleted = []
    with reg.store.lock:
        for obj in reg.store.items(rt.key, namespace if rt.namespaced else None):
            meta = obj["metadata"]
            if labels(meta.get("labels") or {}) and fields(reg.view(rt, obj)):
                try:
                    deleted.append(delete(reg, rt, meta.get("namespace", ""), meta["name"],
                                          propagation=propagation, dry_run=dry_run))
                except ApiError as exc:
                    if exc.code != 404:  # removed meanwhile by garbage collection: fine
                        raise
        rv = reg.store.resource_version
    items = [d if rt.custom else {k: v for k, v in d.items() if k not in ("kind", "apiVersion")}
             for d in deleted]
    return {"kind": rt.list_kind, "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(rv)}, "items": items}


def _start_deletion(reg: Registry, rt: ResourceType, obj: dict[str, Any],
                    propagation: str, grace_period: int | None = None) -> dict[str, Any]:
    meta = obj["metadata"]
    if rt.key == PODS and reg.graceful_pods:
        terminating = _start_graceful_termination(reg, obj, grace_period)
        if terminating is not None:
            return terminating
    finalizers = list(meta.get("finalizers") or [])
    if propagation == "Orphan":
        _orphan_dependents(reg, meta["uid"])
    elif propagation == "Foreground" and FOREGROUND not in finalizers:
        finalizers.append(FOREGROUND)
    if rt.key == CRD_GROUP_RESOURCE and CRD_CLEANUP not in finalizers:
        finalizers.append(CRD_CLEANUP)
    if not finalizers and not has_system_finalizer(obj):
        return remove(reg, rt, obj)
    if meta.get("deletionTimestamp") and finalizers == (meta.get("finalizers") or []):
        return obj  # already being deleted: nothing new to record
    updated = copy.deepcopy(obj)
    umeta = updated["metadata"]
    if not umeta.get("deletionTimestamp"):
        umeta["deletionTimestamp"] = now()
        umeta["deletionGracePeriodSeconds"] = 0
        if tracks_generation(rt):
            umeta["generation"] = int(umeta.get("generation", 1)) + 1
    if finalizers:
        umeta["finalizers"] = finalizers
    if rt.key == NAMESPACES:
        updated.setdefault("status", {})["phase"] = "Terminating"
    stored = reg.store.put(rt.key, updated)
    _cascade(reg, rt, stored, propagation)
    return stored


def _start_graceful_termination(reg: Registry, pod: dict[str, Any],
                                grace_period: int | None) -> dict[str, Any] | None:
    """A pod on a node waits for its kubelet: deletionTimestamp = now + grace period."""
    spec, meta = pod.get("spec") or {}, pod["metadata"]
    if not spec.get("nodeName"):
        return None  # never scheduled: nothing to stop, removed at once as on a real server
    grace = grace_period if grace_period is not None else int(
        spec.get("terminationGracePeriodSeconds", 30))
    if grace <= 0 or meta.get("deletionTimestamp"):
        return None if grace <= 0 else pod
    updated = copy.deepcopy(pod)
    updated["metadata"]["deletionTimestamp"] = now(after_seconds=grace)
    updated["metadata"]["deletionGracePeriodSeconds"] = grace
    return reg.store.put(PODS, updated)


def finish_termination(reg: Registry, pod: dict[str, Any]) -> None:
    """What a kubelet does once a terminating pod's containers stopped."""
    meta = pod["metadata"]
    if meta.get("finalizers"):
        meta["deletionGracePeriodSeconds"] = 0
        reg.store.put(PODS, pod)
        return
    pods = reg.any_version(*PODS)
    assert pods is not None
    remove(reg, pods, pod)
    settle(reg)


def _cascade(reg: Registry, rt: ResourceType, obj: dict[str, Any], propagation: str) -> None:
    """Delete what an object being deleted takes with it."""
    if propagation == "Foreground":
        for key, dep in _dependents(reg, obj["metadata"]["uid"]):
            _delete_stored(reg, key, dep, "Background")
    if rt.key == NAMESPACES:
        ns = obj["metadata"]["name"]
        for key, item in reg.store.all_objects(lambda o: o["metadata"].get("namespace") == ns):
            _delete_stored(reg, key, item, "Background")
    if rt.key == CRD_GROUP_RESOURCE:
        key = (obj["spec"]["group"], obj["spec"]["names"]["plural"])
        for item in reg.store.items(key):
            _delete_stored(reg, key, item, "Background")


def _delete_stored(reg: Registry, key: Key, obj: dict[str, Any], propagation: str) -> None:
    rt = reg.any_version(*key)
    if rt is None:
        return
    meta = obj["metadata"]
    if reg.store.get(key, meta.get("namespace", ""), meta["name"]) is None:
        return
    _start_deletion(reg, rt, obj, propagation)


def remove(reg: Registry, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """Really remove an object, then collect garbage it leaves behind."""
    removed = reg.store.remove(rt.key, obj)
    if rt.key == CRD_GROUP_RESOURCE:
        reg.forget_crd(removed)
    _collect_garbage(reg, removed["metadata"]["uid"])
    return removed


def _dependents(reg: Registry, uid: str) -> list[tuple[Key, dict[str, Any]]]:
    return reg.store.all_objects(lambda o: any(
        ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or []))


def _orphan_dependents(reg: Registry, uid: str) -> None:
    for key, dep in _dependents(reg, uid):
        dep["metadata"]["ownerReferences"] = [
            r for r in dep["metadata"]["ownerReferences"] if r.get("uid") != uid]
        if not dep["metadata"]["ownerReferences"]:
            del dep["metadata"]["ownerReferences"]
        reg.store.put(key, dep)


def _exists(reg: Registry, uid: Any) -> bool:
    return reg.store.any_object(lambda o: bool(o["metadata"]["uid"] == uid))


def _collect_garbage(reg: Registry, uid: str) -> None:
    """Background GC: a dependent goes when none of its owners is left."""
    dependents = _dependents(reg, uid)
    if not dependents:
        return
    uids = {r.get("uid") for _, dep in dependents for r in dep["metadata"]["ownerReferences"]}
    alive = {u for u in uids if _exists(reg, u)}
    for key, dep in dependents:
        refs = dep["metadata"]["ownerReferences"]
        if any(r.get("uid") in alive for r in refs):
            dep["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") in alive]
            reg.store.put(key, dep)
        else:
            _delete_stored(reg, key, dep, "Background")


def _owner_alive(reg: Registry, dependent: dict[str, Any], ref: dict[str, Any]) -> bool:
    """Is the owner there, in the dependent's namespace (or cluster-scoped), with that uid?"""
    group, _, version = str(ref.get("apiVersion", "")).rpartition("/")
    owner_type = next((t for t in reg.types() if (t.group, t.version, t.kind) ==
                       (group, version, ref.get("kind"))), None)
    if owner_type is None:
        return True  # a kind nobody serves cannot be resolved; a real GC waits, it does not act
    namespace = dependent["metadata"].get("namespace", "") if owner_type.namespaced else ""
    owner = reg.store.get(owner_type.key, namespace, str(ref.get("name", "")))
    return owner is not None and owner["metadata"]["uid"] == ref.get("uid")


def check_owners(reg: Registry, rt: ResourceType, obj: dict[str, Any]) -> None:
    """GC of a new or changed dependent: gone when all its owners are absent (wrong uid, other
    namespace, never existed), dangling references dropped when some owners remain."""
    refs = obj["metadata"].get("ownerReferences") or []
    if not refs or obj["metadata"].get("deletionTimestamp"):
        return
    alive = [r for r in refs if _owner_alive(reg, obj, r)]
    if not alive:
        _start_deletion(reg, rt, obj, "Background")
        settle(reg)
    elif len(alive) < len(refs):
        obj["metadata"]["ownerReferences"] = alive
        reg.store.put(rt.key, obj)


def settle(reg: Registry) -> None:
    """Finish deletions whose waits are over (foreground dependents, namespace/CRD content)."""
    progress = True
    while progress:
        progress = False
        for key, obj in reg.store.all_objects(lambda o: bool(o["metadata"].get(
                "deletionTimestamp"))):
            meta = obj["metadata"]
            rt = reg.any_version(*key)
            if rt is None:
                continue
            if _finish_system_finalizers(reg, key, obj):
                progress = True
                if not meta.get("finalizers") and not has_system_finalizer(obj):
                    remove(reg, rt, obj)
                else:
                    reg.store.put(key, obj)


def _finish_system_finalizers(reg: Registry, key: Key, obj: dict[str, Any]) -> bool:
    meta = obj["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    changed = False
    if FOREGROUND in finalizers and not any(
            any(r.get("uid") == meta["uid"] and r.get("blockOwnerDeletion")
                for r in d["metadata"].get("ownerReferences") or [])
            for _, d in _dependents(reg, meta["uid"])):
        finalizers.remove(FOREGROUND)
        changed = True
    if CRD_CLEANUP in finalizers and key == CRD_GROUP_RESOURCE and not reg.store.items(
            (obj["spec"]["group"], obj["spec"]["names"]["plural"])):
        finalizers.remove(CRD_CLEANUP)
        changed = True
    if key == NAMESPACES and has_system_finalizer(obj) and not reg.store.any_object(
            lambda o: o["metadata"].get("namespace") == meta["name"]):
        obj["spec"]["finalizers"] = []
        changed = True
    if changed:
        meta["finalizers"] = finalizers
        if not finalizers:
            del meta["finalizers"]
    return changed
