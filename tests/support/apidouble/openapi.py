"""A minimal OpenAPI v3 publication, enough for kubectl's use of it.

kubectl 1.32 reads ``/openapi/v3`` to learn whether a kind's PATCH accepts the
``fieldValidation`` parameter (then it validates server-side instead of downloading schemas)
and ``kubectl explain`` reads the kind's schema from ``components.schemas``. So each group
version lists its resource paths with a PATCH operation carrying that parameter and the
``x-kubernetes-group-version-kind`` extension; custom resources publish their CRD schema,
built-ins an open object. ``/openapi/v2`` is not served (kubectl only falls back to it).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from .resources import ResourceType

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")


def _gv_path(rt: ResourceType) -> str:
    return f"apis/{rt.group}/{rt.version}" if rt.group else "api/v1"


def _definition_name(rt: ResourceType) -> str:
    group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{group}.{rt.version}.{rt.kind}"


def _schema(rt: ResourceType) -> dict[str, Any]:
    gvk = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    if rt.schema is None:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "description": f"{rt.kind} (schema not published by the test double)",
                "x-kubernetes-group-version-kind": gvk}
    schema = copy.deepcopy(rt.schema)
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string", "description":
                                    "APIVersion defines the versioned schema of this "
                                    "representation of an object."})
    props.setdefault("kind", {"type": "string", "description":
                              "Kind is a string value representing the REST resource this "
                              "object represents."})
    props.setdefault("metadata", {"type": "object", "description":
                                  "Standard object's metadata."})
    schema["x-kubernetes-group-version-kind"] = gvk
    return schema


def _operations(rt: ResourceType) -> dict[str, Any]:
    base = f"/{_gv_path(rt)}/"
    if rt.namespaced:
        base += "namespaces/{namespace}/"
    ref = {"$ref": f"#/components/schemas/{_definition_name(rt)}"}
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    params = [{"name": p, "in": "query", "schema": {"type": "string"}} for p in _QUERY_PARAMS]
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
    item = {
        "get": {"operationId": f"read{rt.kind}", "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk, "responses": ok},
        "put": {"operationId": f"replace{rt.kind}", "x-kubernetes-action": "put",
                "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": ok},
        "patch": {"operationId": f"patch{rt.kind}", "x-kubernetes-action": "patch",
                  "x-kubernetes-group-version-kind": gvk, "parameters": params,
                  "responses": ok},
        "delete": {"operationId": f"delete{rt.kind}", "x-kubernetes-action": "delete",
                   "x-kubernetes-group-version-kind": gvk, "responses": ok},
    }
    collection = {
        "get": {"operationId": f"list{rt.kind}", "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": gvk, "responses": {"200": {
                    "description": "OK"}}},
        "post": {"operationId": f"create{rt.kind}", "x-kubernetes-action": "post",
                 "x-kubernetes-group-version-kind": gvk, "parameters": params,
                 "responses": ok},
    }
    return {base + rt.plural: collection, base + rt.plural + "/{name}": item}


def group_version_doc(types: list[ResourceType], gv_path: str) -> dict[str, Any] | None:
    chosen = [t for t in types if _gv_path(t) == gv_path]
    if not chosen:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in sorted(chosen, key=lambda t: t.plural):
        paths.update(_operations(rt))
        schemas[_definition_name(rt)] = _schema(rt)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": schemas}}


def _hash(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()


def index(types: list[ResourceType]) -> dict[str, Any]:
    paths = {}
    for gv in sorted({_gv_path(t) for t in types}):
        doc = group_version_doc(types, gv)
        assert doc is not None
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_hash(doc)}"}
    return {"paths": paths}
