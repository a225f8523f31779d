"""Label and field selectors as the list and watch verbs read them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
comma-joined (all must hold). Field selectors: ``path=value``, ``path==value``,
``path!=value`` over the dotted fields a resource type allows. Also renders a
``metav1.LabelSelector`` (matchLabels/matchExpressions) as a selector string for ``/scale``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import bad_request

Matcher = Callable[[Mapping[str, str]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_EQ = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return [t for t in terms if t.strip()]


def _term(term: str) -> Matcher:
    if m := _SET.match(term):
        key, op = m.group(1), m.group(2)
        values = {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ.match(term):
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.match(term):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise bad_request(f'unable to parse requirement: found "{term.strip()}", expected selector')


def label_matcher(selector: str | None) -> Matcher:
    """Parse a labelSelector query value into a predicate over a labels mapping."""
    if not selector:
        return lambda labels: True
    terms = [_term(t) for t in _split_terms(selector)]
    return lambda labels: all(t(labels) for t in terms)


def _dotted(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_matcher(selector: str | None, allowed: tuple[str, ...],
                  kind: str) -> Callable[[Mapping[str, Any]], bool]:
    """Parse a fieldSelector; unknown field labels are a 400 as on a real server."""
    if not selector:
        return lambda obj: True
    permitted = {"metadata.name", "metadata.namespace", *allowed}
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = m.groups()
        if path not in permitted:
            raise bad_request(f'field label not supported: {path}')
        checks.append((path, op == "!=", value))
    del kind
    return lambda obj: all((_dotted(obj, p) == v) != neg for p, neg, v in checks)


def selector_string(selector: Any) -> str:
    """Render a LabelSelector object (or pass a string through) as a selector string."""
    if selector is None:
        return ""
    if isinstance(selector, str):
        return selector
    if not isinstance(selector, Mapping):
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
