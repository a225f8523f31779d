"""Server-side Table output (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).

What ``kubectl get`` prints: custom resources get Name plus their
``additionalPrinterColumns`` (or Name and Age when they declare none); pods get Name, Ready,
Status, Restarts, Age; namespaces Name, Status, Age; other built-ins Name and Age. Date
columns are rendered as ages, as the API server does. Rows carry the object as
PartialObjectMetadata unless ``includeObject=Object`` (or None).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from . import timestamps
from .jsonpath import find
from .resources import PrinterColumn, ResourceType

_NAME = {"name": "Name", "type": "string", "format": "name", "priority": 0,
         "description": "Name must be unique within a namespace."}
_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp",
                     "CreationTimestamp is a timestamp representing the server time when this "
                     "object was created.")


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration: 45s, 3m20s, 15m, 5h10m, 2d3h, 300d, 2y10d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        then = timestamps.parse(timestamp)
    except ValueError:
        return None
    return human_duration((datetime.now(UTC) - then).total_seconds())


def _cell(column: PrinterColumn, obj: dict[str, Any]) -> Any:
    found = find(obj, column.json_path)
    if not found:
        return None
    value = found[0]
    if column.type == "date":
        return _age(value)
    if column.type == "integer":
        return value if isinstance(value, int) else None
    if column.type == "number":
        return value if isinstance(value, (int, float)) else None
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value) if not isinstance(value, str) else value


def _pod_cells(obj: dict[str, Any]) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [f"{ready}/{len(spec.get('containers') or [])}", reason, restarts]


def _definitions(rt: ResourceType) -> tuple[list[dict[str, Any]], list[PrinterColumn]]:
    if rt.custom:
        columns = list(rt.printer_columns) or [_AGE]
    elif rt.plural == "pods":
        columns = [PrinterColumn("Ready", "string", "", "The aggregate readiness state"),
                   PrinterColumn("Status", "string", "", "The aggregate status"),
                   PrinterColumn("Restarts", "string", "", "The number of restarts"), _AGE]
    elif rt.plural == "namespaces":
        columns = [PrinterColumn("Status", "string", ".status.phase", "The phase"), _AGE]
    else:
        columns = [_AGE]
    defs = [dict(_NAME)] + [{"name": c.name, "type": c.type, "format": c.format,
                             "description": c.description, "priority": c.priority}
                            for c in columns]
    return defs, columns


def to_table(rt: ResourceType, objects: list[dict[str, Any]], list_meta: dict[str, Any],
             include_object: str = "Metadata") -> dict[str, Any]:
    defs, columns = _definitions(rt)
    rows = []
    for obj in objects:
        if rt.plural == "pods" and not rt.custom:
            cells = [obj["metadata"]["name"], *_pod_cells(obj),
                     _age(obj["metadata"].get("creationTimestamp"))]
        else:
            cells = [obj["metadata"]["name"], *(_cell(c, obj) for c in columns)]
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": defs, "rows": rows}
