"""Structural-schema handling of custom resources: pruning, nulls and defaulting.

What a real API server does to a custom resource before validation, in its order: drop
``null`` values the schema does not call nullable, prune fields the schema does not know
(unless ``x-kubernetes-preserve-unknown-fields``; ``x-kubernetes-embedded-resource`` keeps
``apiVersion``/``kind``/``metadata``), then fill ``default``s. Validation (jsonschema, CEL) is
``validation.py``. Defaults apply on writes and, as on a real server, when objects are read.
"""

from __future__ import annotations

import copy
from typing import Any

_META_KEYS = {
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields", "selfLink",
}


def _preserves(schema: dict[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(value: Any, schema: dict[str, Any], unknown: list[str] | None = None,
          path: str = "") -> Any:
    """Return ``value`` without fields ``schema`` does not describe; list them in ``unknown``."""
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if props is not None and key in props:
                out[key] = prune(item, props[key], unknown, sub)
            elif isinstance(extra, dict):
                out[key] = prune(item, extra, unknown, sub)
            elif embedded and key in ("apiVersion", "kind"):
                out[key] = item
            elif embedded and key == "metadata" and isinstance(item, dict):
                out[key] = {k: v for k, v in item.items() if k in _META_KEYS}
            elif _preserves(schema) or extra is True:
                out[key] = item
            elif unknown is not None:
                unknown.append(sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], unknown, f"{path}[{i}]")
                for i, item in enumerate(value)]
    return value


def prune_root(obj: dict[str, Any], schema: dict[str, Any],
               unknown: list[str] | None = None) -> dict[str, Any]:
    """Prune a whole custom resource: apiVersion, kind and ObjectMeta always survive."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    props = dict(schema.get("properties") or {})
    for key in ("apiVersion", "kind", "metadata"):
        props.pop(key, None)
    pruned = prune(body, {**schema, "properties": props}, unknown)
    meta = obj.get("metadata") or {}
    for key in meta:
        if key not in _META_KEYS and unknown is not None:
            unknown.append(f"metadata.{key}")
    result = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
              "metadata": {k: v for k, v in meta.items() if k in _META_KEYS}}
    result.update(pruned)
    return result


def drop_nulls(value: Any, schema: dict[str, Any]) -> Any:
    """Remove ``null`` where the schema does not allow it, so that defaults can apply."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
            if item is None and sub is not None and not sub.get("nullable"):
                continue
            out[key] = drop_nulls(item, sub) if sub is not None else item
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [drop_nulls(item, schema["items"]) for item in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill missing properties that have a ``default``; recurse into what is present."""
    if isinstance(value, dict):
        out = dict(value)
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in list(out.items()):
                if key not in props:
                    out[key] = apply_defaults(item, extra)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def normalize(obj: dict[str, Any], schema: dict[str, Any],
              unknown: list[str] | None = None) -> dict[str, Any]:
    """Nulls, pruning, defaulting, and pruning again (defaults may carry unknown fields)."""
    obj = drop_nulls(obj, schema)
    obj = prune_root(obj, schema, unknown)
    obj = apply_defaults(obj, schema)
    return prune_root(obj, schema)
