"""CustomResourceDefinitions: checking one, and turning it into served resource types.

A CRD's served versions become ``ResourceType``s with their schema, status/scale
subresources and printer columns; its status gets the conditions and accepted names a real
server sets once the names are accepted. Not covered: conversion webhooks (all versions share
the stored objects and differ only in ``apiVersion``). The schema rules are
``crd_schema.py``.
"""

from __future__ import annotations

from typing import Any

from .crd_schema import schema_causes
from .errors import Cause, field_invalid, field_required
from .resources import PrinterColumn, ResourceType, ScaleSpec


def crd_causes(crd: dict[str, Any]) -> list[Cause]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group", ""), names.get("plural", "")
    causes: list[Cause] = []
    if not group:
        causes.append(field_required("spec.group"))
    if not plural:
        causes.append(field_required("spec.names.plural"))
    if not names.get("kind"):
        causes.append(field_required("spec.names.kind"))
    name = crd["metadata"].get("name", "")
    if group and plural and name != f"{plural}.{group}":
        causes.append(field_invalid("metadata.name", name,
                                    "must be spec.names.plural+\".\"+spec.group"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(field_invalid("spec.scope", spec.get("scope"),
                                    'must be "Namespaced" or "Cluster"'))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(field_required("spec.versions", "must have exactly one version marked "
                                                      "as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(field_invalid("spec.versions", versions,
                                    "must have exactly one version marked as storage version"))
    for i, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            causes.append(field_required(f"spec.versions[{i}].schema.openAPIV3Schema",
                                         "schemas are required"))
        elif schema.get("type") != "object":
            causes.append(field_invalid(f"spec.versions[{i}].schema.openAPIV3Schema.type",
                                        schema.get("type"), 'must be object at the root'))
        causes += schema_causes(version, i)
    return causes


def _columns(version: dict[str, Any]) -> tuple[PrinterColumn, ...]:
    return tuple(
        PrinterColumn(name=c["name"], type=c.get("type", "string"), json_path=c["jsonPath"],
                      description=c.get("description", ""), format=c.get("format", ""),
                      priority=int(c.get("priority", 0)))
        for c in version.get("additionalPrinterColumns") or [])


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    spec = crd["spec"]
    names = spec["names"]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    found = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        found.append(ResourceType(
            group=spec["group"], version=version["name"], plural=names["plural"],
            kind=names["kind"], namespaced=spec.get("scope") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            has_status="status" in subresources,
            scale=ScaleSpec(scale["specReplicasPath"], scale["statusReplicasPath"],
                            scale.get("labelSelectorPath")) if scale is not None else None,
            schema=(version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"},
            printer_columns=_columns(version), custom=True, storage_version=storage,
            strategic=False,
            selectable_fields=tuple(f["jsonPath"].lstrip(".")
                                    for f in version.get("selectableFields") or []),
        ))
    return found


def crd_status(crd: dict[str, Any], now: str) -> dict[str, Any]:
    """The status a real server settles on for an accepted CRD (names accepted, established)."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    old = crd.get("status") or {}
    stored = list(old.get("storedVersions") or [])
    if storage not in stored:
        stored.append(storage)
    condition = {"status": "True", "lastTransitionTime": now}
    return {
        "acceptedNames": names,
        "conditions": [
            {**condition, "type": "NamesAccepted", "reason": "NoConflicts",
             "message": "no conflicts found"},
            {**condition, "type": "Established", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    }
