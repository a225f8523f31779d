"""Structural-schema rules a real server enforces when a CRD is created or updated.

A v1 CRD's ``openAPIV3Schema`` must be structural: every field has a ``type`` (unless
``x-kubernetes-int-or-string`` or ``x-kubernetes-preserve-unknown-fields``), arrays have
``items``, ``properties`` and ``additionalProperties`` are exclusive, ``$ref`` and friends are
forbidden, defaults validate against their own schema, list-type ``map`` names its keys, CEL
rules compile, printer-column paths parse. A CRD author learns here what a cluster would say.
Not covered: CEL cost estimates, default pruning checks, metadata schema beyond name.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from .errors import Cause, field_forbidden, field_invalid, field_required
from .jsonpath import find
from .validation import compile_error, to_jsonschema

_FORBIDDEN = ("$ref", "definitions", "dependencies", "patternProperties", "additionalItems",
              "$schema", "id")


def _node_causes(node: dict[str, Any], path: str, causes: list[Cause], root: bool) -> None:
    exempt = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields")
    if not node.get("type") and not exempt and not root:
        causes.append(field_required(f"{path}.type",
                                     "must not be empty for specified object fields"))
    if node.get("type") == "array" and "items" not in node:
        causes.append(field_required(f"{path}.items", "must be specified"))
    if "properties" in node and isinstance(node.get("additionalProperties"), dict):
        causes.append(field_forbidden(f"{path}.additionalProperties",
                                      "additionalProperties and properties are mutual exclusive"))
    for key in _FORBIDDEN:
        if key in node:
            causes.append(field_forbidden(f"{path}.{key}", f"{key} is not supported"))
    if node.get("x-kubernetes-list-type") == "map" and not node.get(
            "x-kubernetes-list-map-keys"):
        causes.append(field_required(f"{path}.x-kubernetes-list-map-keys",
                                     'must not be empty if x-kubernetes-list-type is "map"'))
    if "default" in node:
        errors = list(jsonschema.Draft7Validator(to_jsonschema(node)).iter_errors(
            node["default"]))
        if errors:
            causes.append(field_invalid(f"{path}.default", node["default"], errors[0].message))
    for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
        problem = compile_error(str(rule.get("rule", "")))
        if problem:
            causes.append(field_invalid(f"{path}.x-kubernetes-validations[{i}].rule",
                                        rule.get("rule"), f"compilation failed: {problem}"))


def _walk(node: Any, path: str, causes: list[Cause], root: bool = False) -> None:
    if not isinstance(node, dict):
        return
    _node_causes(node, path, causes, root)
    for key, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{path}.properties[{key}]", causes)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}.items", causes)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}.additionalProperties", causes)


def schema_causes(version: dict[str, Any], index: int) -> list[Cause]:
    """Causes for one entry of ``spec.versions`` (its schema and printer columns)."""
    causes: list[Cause] = []
    base = f"spec.versions[{index}]"
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    if isinstance(schema, dict):
        _walk(schema, f"{base}.schema.openAPIV3Schema", causes, root=True)
        meta = (schema.get("properties") or {}).get("metadata") or {}
        extra = set(meta.get("properties") or {}) - {"name", "generateName"}
        if extra:
            causes.append(field_forbidden(
                f"{base}.schema.openAPIV3Schema.properties[metadata]",
                "must not specify anything other than name and generateName, but metadata is "
                f"implicitly specified ({', '.join(sorted(extra))})"))
    for j, column in enumerate(version.get("additionalPrinterColumns") or []):
        try:
            find({}, str(column.get("jsonPath", "")))
        except ValueError:
            causes.append(field_invalid(f"{base}.additionalPrinterColumns[{j}].jsonPath",
                                        column.get("jsonPath"), "must be a simple json path"))
    return causes
