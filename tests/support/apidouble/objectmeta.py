"""ObjectMeta rules every kind shares: label keys and values, annotation keys and size,
owner references, generated names.

What the API server's generic ObjectMeta validation rejects with 422 (a label value longer
than 63 characters is a classic way for an operator to work in tests and fail on a cluster).
Not covered: managedFields validation, finalizer-name warnings.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import Cause, field_invalid, field_required

_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_TOTAL_ANNOTATIONS = 256 * 1024
# Generated names keep at most this much of generateName before the random suffix.
MAX_GENERATED_PREFIX = 58


def _key_causes(field: str, key: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not re.fullmatch(_SUBDOMAIN, prefix)):
        problems.append("prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                        "alphanumeric characters, '-' or '.', and must start and end with an "
                        "alphanumeric character")
    if not name or len(name) > 63 or not re.fullmatch(_NAME_PART, name):
        problems.append("name part must consist of alphanumeric characters, '-', '_' or '.', "
                        "and must start and end with an alphanumeric character, and be no "
                        "more than 63 characters")
    return [field_invalid(field, key, p) for p in problems]


def _value_causes(field: str, value: Any) -> list[Cause]:
    if not isinstance(value, str):
        return [field_invalid(field, value, "must be a string")]
    if value and (len(value) > 63 or not re.fullmatch(_NAME_PART, value)):
        return [field_invalid(field, value, "a valid label must be an empty string or consist "
                                            "of alphanumeric characters, '-', '_' or '.', and "
                                            "must start and end with an alphanumeric character"
                                            ", and be no more than 63 characters")]
    return []


def meta_causes(meta: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        causes += _key_causes("metadata.labels", key)
        causes += _value_causes("metadata.labels", value)
    annotations = meta.get("annotations") or {}
    for key in annotations:
        causes += _key_causes("metadata.annotations", key)
    if len(json.dumps(annotations)) > _TOTAL_ANNOTATIONS:
        causes.append(field_invalid("metadata.annotations", "", "Too long: must have at most "
                                    f"{_TOTAL_ANNOTATIONS} bytes"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for part in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(part):
                causes.append(field_required(f"metadata.ownerReferences[{i}].{part}"))
    controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if len(controllers) > 1:
        causes.append(field_invalid("metadata.ownerReferences", "", "Only one reference can "
                                    "have Controller set to true"))
    return causes
