"""events.k8s.io/v1 Events as a view of core/v1 Events, which is how a real server stores them.

Both APIs read and write the same objects: an event posted through one (kopf posts core
events) is listed and watched through the other (``kubectl events``). Fields that were renamed
between the two are mapped; the rest is shared.
"""

from __future__ import annotations

from typing import Any

GROUP = "events.k8s.io"
# core/v1 name -> events.k8s.io/v1 name; fields not listed keep their name.
_RENAMED = {
    "involvedObject": "regarding", "message": "note", "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp", "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount", "reportingComponent": "reportingController",
}
_BACK = {v: k for k, v in _RENAMED.items()}


def from_core(obj: dict[str, Any], api_version: str) -> dict[str, Any]:
    out = {_RENAMED.get(k, k): v for k, v in obj.items()}
    out["apiVersion"] = api_version
    return out


def to_core(obj: dict[str, Any]) -> dict[str, Any]:
    out = {_BACK.get(k, k): v for k, v in obj.items()}
    out["apiVersion"] = "v1"
    return out
