"""Schema checks of built-in kinds, from the OpenAPI schemas ``kubernetes-validate`` ships.

A real API server decodes a built-in object into its Go type: unknown fields are dropped
(or, with ``fieldValidation=Strict``, rejected with 400) and wrong types or missing required
fields are rejected. This module does the same against the Kubernetes 1.32 JSON schemas:
``unknown_fields`` finds (and removes) fields the kind does not have, ``schema_causes``
returns 422 causes. Not covered: the hand-written validation of each kind (immutable fields,
cross-field rules).
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from .errors import Cause
from .validation import schema_error_cause

KUBE_VERSION = "1.32.0"


@functools.lru_cache(maxsize=64)
def _validator(kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    group_version = api_version.split("/")
    if len(group_version) == 2:
        suffix = f"{group_version[0].split('.')[0]}-{group_version[1]}"
    else:
        suffix = group_version[0]
    folder = f"kubernetes-json-schema/v{KUBE_VERSION}-local-strict"
    try:
        schema = kv_utils.schema_contents(f"{folder}/{kind.lower()}-{suffix}.json", KUBE_VERSION)
    except FileNotFoundError:
        return None
    definitions = kv_utils.schema_contents(f"{folder}/_definitions.json", KUBE_VERSION)
    registry: Registry[Any] = Resource.from_contents(definitions) @ (
        Resource.from_contents(schema) @ Registry())
    validator: jsonschema.protocols.Validator = jsonschema.validators.Draft202012Validator(
        schema, registry=registry)
    return validator


def _errors(obj: dict[str, Any]) -> list[jsonschema.ValidationError]:
    validator = _validator(obj.get("kind", ""), obj.get("apiVersion", ""))
    return [] if validator is None else list(validator.iter_errors(obj))


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def check(obj: dict[str, Any]) -> tuple[list[str], list[Cause]]:
    """One validation pass: the unknown fields (removed from ``obj``, as decoding into the
    Go type drops them) and the causes of a 422."""
    unknown: list[str] = []
    causes: list[Cause] = []
    for error in _errors(obj):
        if error.validator != "additionalProperties":
            causes.append(schema_error_cause(error))
        elif isinstance(error.instance, dict) and isinstance(error.schema, dict):
            known = set(error.schema.get("properties") or {})
            for key in [k for k in error.instance if k not in known]:
                unknown.append(_path([*error.absolute_path, key]))
                del error.instance[key]
    return sorted(unknown), causes
