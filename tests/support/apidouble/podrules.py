"""Pod validation beyond the schema: what the API server's own pod validation refuses.

Containers (at least one; unique RFC 1123 label names; an image), ports in 1..65535, and
resources: every quantity (also emptyDir sizeLimit, ephemeral and PVC storage requests) must
parse (else 400, as a decoding error) and each request may not
exceed its limit (422). Also the same for a Deployment's pod template. Not covered: volumes,
probes, security contexts and the other hundred rules.
"""

from __future__ import annotations

import re
from typing import Any

from . import quantity
from .errors import Cause, field_invalid, field_required

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


class QuantityError(ValueError):
    """A quantity the server could not decode (answered as 400)."""


def _resources(container: dict[str, Any], path: str, causes: list[Cause]) -> None:
    resources = container.get("resources") or {}
    values: dict[str, dict[str, Any]] = {}
    for part in ("limits", "requests"):
        values[part] = {}
        for name, text in (resources.get(part) or {}).items():
            _parse(text)
            values[part][name] = quantity.parse(text)
    for name, request in values["requests"].items():
        limit = values["limits"].get(name)
        if limit is not None and request > limit:
            causes.append(field_invalid(
                f"{path}.resources.requests", resources["requests"][name],
                f"must be less than or equal to {name} limit of {resources['limits'][name]}"))


def _parse(text: Any) -> None:
    try:
        quantity.parse(text)
    except ValueError as exc:
        raise QuantityError(str(exc)) from exc


def _volumes(spec: dict[str, Any]) -> None:
    for volume in spec.get("volumes") or []:
        size = (volume.get("emptyDir") or {}).get("sizeLimit")
        if size is not None:
            _parse(size)
        claim = ((volume.get("ephemeral") or {}).get("volumeClaimTemplate") or {}).get("spec")
        for text in (((claim or {}).get("resources") or {}).get("requests") or {}).values():
            _parse(text)


def pod_spec_causes(spec: dict[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    _volumes(spec)
    containers = spec.get("containers") or []
    if not containers:
        causes.append(field_required(f"{path}.containers"))
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(group) or []):
            where = f"{path}.{group}[{i}]"
            name = str(container.get("name", ""))
            if not re.fullmatch(_LABEL, name) or len(name) > 63:
                causes.append(field_invalid(f"{where}.name", name,
                                            "a lowercase RFC 1123 label is required"))
            elif name in names:
                causes.append({"reason": "FieldValueDuplicate", "field": f"{where}.name",
                               "message": f'Duplicate value: "{name}"'})
            names.add(name)
            if not container.get("image"):
                causes.append(field_required(f"{where}.image"))
            for j, port in enumerate(container.get("ports") or []):
                number = port.get("containerPort")
                if not isinstance(number, int) or not 0 < number < 65536:
                    causes.append(field_invalid(f"{where}.ports[{j}].containerPort", number,
                                                "must be between 1 and 65535, inclusive"))
            _resources(container, where, causes)
    return causes


def kind_causes(obj: dict[str, Any]) -> list[Cause]:
    """Pod rules for pods and for the pod templates of deployments."""
    if obj.get("kind") == "Pod":
        return pod_spec_causes(obj.get("spec") or {}, "spec")
    if obj.get("kind") == "PersistentVolumeClaim":
        requests = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {})
        for text in requests.values():
            _parse(text)
        return []
    if obj.get("kind") == "Deployment":
        template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        return pod_spec_causes(template, "spec.template.spec")
    return []
