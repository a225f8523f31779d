"""The ``/scale`` subresource: an ``autoscaling/v1`` Scale view of a scalable object.

GET builds the Scale from the kind's spec/status replica paths and label selector path;
PUT and PATCH change only the spec replicas of the underlying object (through the normal
write pipeline, so generation, validation and watch events follow). Optimistic concurrency
applies with the object's resourceVersion.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError, bad_request, conflict
from .jsonpath import find, set_path
from .patching import json_patch, merge_patch
from .registry import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Registry
from .resources import SCALE_API_VERSION, ResourceType
from .selectors import selector_string


def _spec(rt: ResourceType) -> Any:
    if rt.scale is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return rt.scale


def get_scale(reg: Registry, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
    spec = _spec(rt)
    obj = reg.stored(rt, namespace, name)
    meta = obj["metadata"]
    wanted = find(obj, spec.spec_replicas_path)
    current = find(obj, spec.status_replicas_path)
    status: dict[str, Any] = {"replicas": int(current[0]) if current else 0}
    if spec.label_selector_path:
        found = find(obj, spec.label_selector_path)
        if found and found[0]:
            status["selector"] = selector_string(found[0])
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                        "creationTimestamp") if k in meta}
    return {"kind": "Scale", "apiVersion": SCALE_API_VERSION, "metadata": scale_meta,
            "spec": {"replicas": int(wanted[0]) if wanted else 0}, "status": status}


def update_scale(reg: Registry, rt: ResourceType, namespace: str, name: str,
                 body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    spec = _spec(rt)
    with reg.store.lock:
        obj = reg.stored(rt, namespace, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name)
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: '
                           f"spec.replicas: Invalid value: {replicas}: must be greater than or "
                           f"equal to 0")
        old = reg.stored(rt, namespace, name)
        set_path(obj, spec.spec_replicas_path, replicas)
        reg.write(rt, old, obj, dry_run=dry_run)
        scale = get_scale(reg, rt, namespace, name)
        if dry_run:
            scale["spec"] = {"replicas": replicas}
        return scale


def patch_scale(reg: Registry, rt: ResourceType, namespace: str, name: str,
                content_type: str, patch: Any, *, dry_run: bool = False) -> dict[str, Any]:
    with reg.store.lock:
        current = get_scale(reg, rt, namespace, name)
        if content_type in (MERGE_PATCH, STRATEGIC_PATCH):
            new = merge_patch(current, patch)
        elif content_type == JSON_PATCH:
            new = json_patch(current, patch)
        else:
            raise bad_request(f"unsupported patch type for scale: {content_type}")
        return update_scale(reg, rt, namespace, name, new, dry_run=dry_run)
