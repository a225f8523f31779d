"""Validation of custom resources: OpenAPI v3 schema (via jsonschema) and CEL rules.

``validate(obj, schema, old)`` returns the field causes a real API server would answer in a
422 Invalid: type, required, enum, bounds, pattern, lengths, item counts, and
``x-kubernetes-validations`` rules evaluated with ``cel-python`` (``self``; transition rules
that use ``oldSelf`` only run on updates where the old value exists), and
``x-kubernetes-list-type`` set/map uniqueness. Not covered: CEL cost budgets, format checks
beyond jsonschema's.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from .errors import Cause, field_invalid, field_not_supported, field_required


def to_jsonschema(schema: Any) -> Any:
    """Translate the OpenAPI dialect (nullable, int-or-string, x-kubernetes-*) for jsonschema."""
    if isinstance(schema, list):
        return [to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "example",
                                                       "externalDocs"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_jsonschema(v) for k, v in value.items()}
        elif key == "format":
            continue  # int32/int64/quantity etc. are not jsonschema formats
        else:
            out[key] = to_jsonschema(value)
    # OpenAPI 3.0 writes exclusive bounds as booleans next to minimum/maximum.
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), bool):
            del out[bound]
            if schema[bound] and limit in schema:
                out[bound] = out.pop(limit)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _field(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_error_cause(error: jsonschema.ValidationError) -> Cause:
    """A jsonschema error worded as the API server words the same field error."""
    field, value, kind = _field(error.absolute_path), error.instance, error.validator
    expected = error.validator_value
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return field_required(f"{field}.{missing}" if field else missing)
    if kind == "enum":
        return field_not_supported(field, value, list(expected))
    where = field or "<root>"
    detail = {
        "type": f"{where} in body must be of type {_typename(expected)}: {_show(value)}",
        "minimum": f"{where} in body should be greater than or equal to {expected}",
        "maximum": f"{where} in body should be less than or equal to {expected}",
        "exclusiveMinimum": f"{where} in body should be greater than {expected}",
        "exclusiveMaximum": f"{where} in body should be less than {expected}",
        "pattern": f"{where} in body should match '{expected}'",
        "minLength": f"{where} in body should be at least {expected} chars long",
        "maxLength": f"{where} in body may not be longer than {expected}",
        "minItems": f"{where} in body should have at least {expected} items",
        "maxItems": f"{where} in body must have at most {expected} items",
        "minProperties": f"{where} in body should have at least {expected} properties",
        "maxProperties": f"{where} in body should have at most {expected} properties",
    }.get(str(kind), error.message)
    return field_invalid(field, value, detail)


def _typename(expected: Any) -> str:
    if isinstance(expected, list):
        return next((t for t in expected if t != "null"), "null")
    return str(expected)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def compile_error(rule: str) -> str | None:
    """Why a CEL rule does not compile, or None when it does."""
    try:
        _program(rule)
    except CELParseError as exc:
        return str(exc).splitlines()[0] if str(exc) else "parse error"
    return None


def _run_cel(rule: str, activation: dict[str, Any]) -> Any:
    """Evaluate a rule; an evaluation error counts as a failed rule, as on a real server."""
    try:
        result = _program(rule).evaluate(
            {k: json_to_cel(v) for k, v in activation.items()})
    except (CELEvalError, CELParseError) as exc:
        return exc
    return result


def _cel_causes(value: Any, old: Any, schema: dict[str, Any], path: str,
                causes: list[Cause]) -> None:
    for rule in schema.get("x-kubernetes-validations") or []:
        expr = rule["rule"]
        transition = "oldSelf" in expr
        if transition and old is None:
            continue
        activation = {"self": value, **({"oldSelf": old} if transition else {})}
        result = _run_cel(expr, activation)
        if result is True or (not isinstance(result, Exception) and bool(result) is True):
            continue
        message = rule.get("message") or f"failed rule: {expr}"
        if rule.get("messageExpression"):
            text = _run_cel(rule["messageExpression"], activation)
            if isinstance(text, str) and text:
                message = str(text)
        field = path
        if rule.get("fieldPath"):
            field = f"{path}{rule['fieldPath']}" if path else rule["fieldPath"].lstrip(".")
        reason = rule.get("reason", "FieldValueInvalid")
        cause = field_invalid(field, value, message)
        cause["reason"] = reason
        causes.append(cause)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is not None:
                old_item = old.get(key) if isinstance(old, dict) else None
                _cel_causes(item, old_item, sub, f"{path}.{key}" if path else key, causes)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _cel_causes(item, None, schema["items"], f"{path}[{i}]", causes)


def _list_causes(value: Any, schema: dict[str, Any], path: str, causes: list[Cause]) -> None:
    """``x-kubernetes-list-type`` set (unique items) and map (unique by its keys)."""
    if isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: list[Any] = []
        for i, item in enumerate(value):
            ident = ([item.get(k) for k in keys] if kind == "map" and isinstance(item, dict)
                     else item)
            if kind in ("set", "map") and ident in seen:
                shown = ident if kind == "set" else dict(zip(keys, ident, strict=True))
                causes.append({"reason": "FieldValueDuplicate", "field": f"{path}[{i}]",
                               "message": f"Duplicate value: {json.dumps(shown)}"})
            seen.append(ident)
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _list_causes(item, schema["items"], f"{path}[{i}]", causes)
    elif isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is not None:
                _list_causes(item, sub, f"{path}.{key}" if path else key, causes)


def validate(obj: dict[str, Any], schema: dict[str, Any],
             old: dict[str, Any] | None = None) -> list[Cause]:
    """All causes why ``obj`` breaks ``schema`` (empty when valid)."""
    body = {k: v for k, v in obj.items() if k != "metadata"}
    root = dict(schema)
    root["properties"] = {k: v for k, v in (schema.get("properties") or {}).items()
                          if k != "metadata"}
    validator = jsonschema.Draft7Validator(to_jsonschema(root))
    causes = [schema_error_cause(e) for e in sorted(validator.iter_errors(body),
                                             key=lambda e: _field(e.absolute_path))]
    _list_causes(body, root, "", causes)
    if not causes:
        _cel_causes(body, _without_meta(old), root, "", causes)
    return causes


def _without_meta(old: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if old is None else {k: v for k, v in old.items() if k != "metadata"}
