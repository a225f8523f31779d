"""Decoding the Kubernetes protobuf envelope for the few kinds kubectl's generators send.

``kubectl create namespace|configmap|secret|serviceaccount|role|rolebinding|clusterrole|
clusterrolebinding`` post protobuf (``application/vnd.kubernetes.protobuf``): the bytes
``k8s\\0`` and a ``runtime.Unknown`` (TypeMeta, raw object). This module reads the protobuf wire
format and maps the field numbers of those kinds (from the Kubernetes API's generated.proto
numbering) to their JSON names; zero values are dropped, as JSON's omitempty does.
Other kinds raise ``UnsupportedKind`` (the server answers 415). Responses are always JSON.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

Schema = dict[int, tuple[str, Any]]

_OWNER_REF: Schema = {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"),
                      5: ("apiVersion", "str"), 6: ("controller", "bool"),
                      7: ("blockOwnerDeletion", "bool")}
_META: Schema = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"),
                 5: ("uid", "str"), 6: ("resourceVersion", "str"), 7: ("generation", "int"),
                 10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", ("map", "str")),
                 12: ("annotations", ("map", "str")),
                 13: ("ownerReferences", ("list", _OWNER_REF)),
                 14: ("finalizers", ("list", "str"))}
_RULE: Schema = {1: ("verbs", ("list", "str")), 2: ("apiGroups", ("list", "str")),
                 3: ("resources", ("list", "str")), 4: ("resourceNames", ("list", "str")),
                 5: ("nonResourceURLs", ("list", "str"))}
_SUBJECT: Schema = {1: ("kind", "str"), 2: ("apiGroup", "str"), 3: ("name", "str"),
                    4: ("namespace", "str")}
_ROLE_REF: Schema = {1: ("apiGroup", "str"), 2: ("kind", "str"), 3: ("name", "str")}
_SECRET_REF: Schema = {1: ("name", "str")}

KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {1: ("metadata", _META),
                          2: ("spec", {1: ("finalizers", ("list", "str"))})},
    ("v1", "ConfigMap"): {1: ("metadata", _META), 2: ("data", ("map", "str")),
                          3: ("binaryData", ("map", "bytes")), 4: ("immutable", "bool")},
    ("v1", "Secret"): {1: ("metadata", _META), 2: ("data", ("map", "bytes")),
                       3: ("type", "str"), 4: ("stringData", ("map", "str")),
                       5: ("immutable", "bool")},
    ("v1", "ServiceAccount"): {1: ("metadata", _META),
                               2: ("secrets", ("list", _SECRET_REF)),
                               3: ("imagePullSecrets", ("list", _SECRET_REF)),
                               4: ("automountServiceAccountToken", "bool")},
    ("rbac.authorization.k8s.io/v1", "Role"): {1: ("metadata", _META),
                                                2: ("rules", ("list", _RULE))},
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): {1: ("metadata", _META),
                                                       2: ("rules", ("list", _RULE))},
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): {
        1: ("metadata", _META), 2: ("subjects", ("list", _SUBJECT)), 3: ("roleRef", _ROLE_REF)},
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): {
        1: ("metadata", _META), 2: ("subjects", ("list", _SUBJECT)), 3: ("roleRef", _ROLE_REF)},
}


class UnsupportedKind(ValueError):
    """A protobuf body of a kind this module has no field numbers for."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            out.append((number, buf[pos:pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4  # fixed-width numbers: unused by these kinds
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _bytes(raw: int | bytes) -> bytes:
    return raw if isinstance(raw, bytes) else b""


def _scalar(kind: str, raw: int | bytes) -> Any:
    if kind == "str":
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    if kind == "bytes":
        return base64.b64encode(raw if isinstance(raw, bytes) else b"").decode()
    if kind == "bool":
        return bool(raw)
    return int(raw) if isinstance(raw, int) else 0


def _message(buf: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, raw in _fields(buf):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, dict):
            value: Any = _message(_bytes(raw), kind)
            if value:
                out[name] = value
        elif isinstance(kind, tuple) and kind[0] == "map":
            entry = dict(_fields(_bytes(raw)))
            key = _scalar("str", entry.get(1, b""))
            out.setdefault(name, {})[key] = _scalar(kind[1], entry.get(2, b""))
        elif isinstance(kind, tuple) and kind[0] == "list":
            item = (_message(_bytes(raw), kind[1])
                    if isinstance(kind[1], dict) else _scalar(kind[1], raw))
            out.setdefault(name, []).append(item)
        else:
            value = _scalar(kind, raw)
            if value not in ("", 0, False):
                out[name] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a protobuf-encoded Kubernetes object."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf body (no k8s\\0 prefix)")
    envelope = dict(_fields(body[len(MAGIC):]))
    type_meta = dict(_fields(_bytes(envelope.get(1, b""))))
    api_version = _scalar("str", type_meta.get(1, b""))
    kind = _scalar("str", type_meta.get(2, b""))
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise UnsupportedKind(f"{api_version} {kind}")
    obj = _message(_bytes(envelope.get(2, b"")), schema)
    return {"apiVersion": api_version, "kind": kind, **obj}
