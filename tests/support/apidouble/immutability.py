"""Fields of built-in kinds that an update may not change, as the API server enforces.

The classic operator bug a lenient double hides: patching a running pod's resources or
command (a real server answers 422 "pod updates may not change fields other than ...").
Covered: pod spec (only container images, activeDeadlineSeconds, added tolerations,
terminationGracePeriodSeconds and a first nodeName, the binding, may change), deployment
selectors, service clusterIP, PVC spec (only storage requests may grow), and ConfigMaps and
Secrets marked ``immutable``. Not covered: every other kind's update rules.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import Cause, field_forbidden, field_invalid
from .resources import ResourceType

_POD_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


def _pod(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    before, after = copy.deepcopy(old.get("spec") or {}), copy.deepcopy(new.get("spec") or {})
    for spec in (before, after):
        for group in ("containers", "initContainers"):
            for container in spec.get(group) or []:
                container.pop("image", None)
        for key in ("activeDeadlineSeconds", "terminationGracePeriodSeconds",
                    "schedulingGates"):
            spec.pop(key, None)
    old_tolerations = before.pop("tolerations", None) or []
    new_tolerations = after.pop("tolerations", None) or []
    if not before.get("nodeName"):  # binding a pod to a node sets nodeName once
        before.pop("nodeName", None)
        after.pop("nodeName", None)
    if before != after or any(t not in new_tolerations for t in old_tolerations):
        return [field_forbidden("spec", _POD_MESSAGE)]
    return []


def _unchanged(old: Any, new: Any, field: str) -> list[Cause]:
    if old is not None and old != new:
        return [field_invalid(field, new, "field is immutable")]
    return []


def _deployment(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    return _unchanged((old.get("spec") or {}).get("selector"),
                      (new.get("spec") or {}).get("selector"), "spec.selector")


def _service(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    before = (old.get("spec") or {}).get("clusterIP")
    after = (new.get("spec") or {}).get("clusterIP")
    if before and after and before != after:
        return [field_invalid("spec.clusterIP", after, "field is immutable")]
    return []


def _pvc(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    before, after = copy.deepcopy(old.get("spec") or {}), copy.deepcopy(new.get("spec") or {})
    old_requests = (before.pop("resources", None) or {}).get("requests") or {}
    new_requests = (after.pop("resources", None) or {}).get("requests") or {}
    causes: list[Cause] = []
    if before != after:
        causes.append(field_forbidden("spec", "spec is immutable after creation except "
                                              "resources.requests and "
                                              "volumeAttributesClassName for bound claims"))
    if set(old_requests) != set(new_requests):
        causes.append(field_forbidden("spec.resources.requests",
                                      "only storage requests may change"))
    return causes


def _immutable_data(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    if not old.get("immutable"):
        return []
    causes = []
    for key in ("data", "binaryData"):
        if old.get(key) != new.get(key):
            causes.append(field_forbidden(key, "field is immutable when `immutable` is set"))
    if not new.get("immutable"):
        causes.append(field_forbidden("immutable", "field is immutable when `immutable` is set"))
    return causes


_RULES = {("", "pods"): _pod, ("apps", "deployments"): _deployment,
          ("", "services"): _service, ("", "persistentvolumeclaims"): _pvc,
          ("", "configmaps"): _immutable_data, ("", "secrets"): _immutable_data}


def update_causes(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Why updating ``old`` to ``new`` is refused (empty when it is allowed)."""
    rule = _RULES.get(rt.key)
    return rule(old, new) if rule is not None and not rt.custom else []
