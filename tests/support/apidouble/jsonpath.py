"""The JSONPath subset CRDs use: printer columns and scale subresource paths.

Supports ``.a.b``, ``.a[0]``, ``.a[*].b`` and filters ``.a[?(@.type=="Ready")].status``
(also single quotes and ``!=``), optionally wrapped in ``{...}``. ``find`` returns every match;
``set_path`` writes a plain dotted path (what ``specReplicasPath`` allows).
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*(==|!=)\s*["']([^"']*)["']\)\]""")


def _tokens(path: str) -> list[tuple[str, ...]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    tokens, pos = [], 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        tokens.append(m.groups())
        pos = m.end()
    return tokens


def _dig(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def find(obj: Any, path: str) -> list[Any]:
    current = [obj]
    for name, index, fkey, fop, fval in _tokens(path):
        nxt: list[Any] = []
        for value in current:
            if name is not None:
                if isinstance(value, dict) and name in value:
                    nxt.append(value[name])
            elif index is not None and isinstance(value, list):
                if index == "*":
                    nxt.extend(value)
                elif int(index) < len(value):
                    nxt.append(value[int(index)])
            elif fkey is not None and isinstance(value, list):
                nxt.extend(v for v in value
                           if (str(_dig(v, fkey)) == fval) == (fop == "=="))
        current = nxt
    return current


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.lstrip(".").split(".")
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
