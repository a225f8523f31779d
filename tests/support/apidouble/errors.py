"""API errors as Kubernetes ``Status`` objects.

Covers the error reasons memkube's clients (kopf, the kubernetes client, kubectl) branch on:
NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Forbidden, MethodNotAllowed,
UnsupportedMediaType, Gone. Not covered: warnings headers, retry-after hints.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Cause(TypedDict, total=False):
    reason: str
    message: str
    field: str


class ApiError(Exception):
    """An error answered to the client as a ``kind: Status`` body with ``code``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str = "",
        group: str = "",
        kind: str = "",
        causes: list[Cause] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = causes or []

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = list(self.causes)
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    what = _qualified(plural, group)
    return ApiError(404, "NotFound", f'{what} "{name}" not found', name=name, group=group,
                    kind=plural)


def already_exists(plural: str, group: str, name: str) -> ApiError:
    what = _qualified(plural, group)
    return ApiError(409, "AlreadyExists", f'{what} "{name}" already exists', name=name,
                    group=group, kind=plural)


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    what = _qualified(plural, group)
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {what} "{name}": {why}',
                    name=name, group=group, kind=plural)


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid naming each offending field, worded like the API server's field errors."""
    what = f"{kind}.{group}" if group else kind
    joined = ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
                       for c in causes)
    if len(causes) > 1:
        joined = f"[{joined}]"
    return ApiError(422, "Invalid", f'{what} "{name}" is invalid: {joined}', name=name,
                    group=group, kind=kind, causes=causes)


def field_invalid(field: str, value: Any, detail: str) -> Cause:
    return {"reason": "FieldValueInvalid", "field": field,
            "message": f"Invalid value: {_show(value)}: {detail}"}


def field_required(field: str, detail: str = "") -> Cause:
    message = "Required value" + (f": {detail}" if detail else "")
    return {"reason": "FieldValueRequired", "field": field, "message": message}


def field_forbidden(field: str, detail: str) -> Cause:
    return {"reason": "FieldValueForbidden", "field": field, "message": f"Forbidden: {detail}"}


def field_not_supported(field: str, value: Any, allowed: list[Any]) -> Cause:
    listed = ", ".join(_show(v) for v in allowed)
    return {"reason": "FieldValueNotSupported", "field": field,
            "message": f"Unsupported value: {_show(value)}: supported values: {listed}"}


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(message: str, *, name: str = "", group: str = "", kind: str = "") -> ApiError:
    return ApiError(403, "Forbidden", message, name=name, group=group, kind=kind)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml (got {content_type})")


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
