"""Discovery documents: /version, /api, /api/v1, /apis, /apis/{group}[/{version}].

Legacy (unaggregated) discovery as kubectl, kopf and the kubernetes client read it:
``groupVersion`` without a leading slash, subresources listed as ``plural/status`` and
``plural/scale``, custom resources as soon as their CRD is stored. Aggregated discovery
(apidiscovery.k8s.io) is not served; clients fall back to these documents.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from .resources import SCALE_API_VERSION, ResourceType

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0",
                "gitCommit": "apidouble", "gitTreeState": "clean",
                "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4",
                "compiler": "gc", "platform": "linux/amd64"}


def _group_versions(types: list[ResourceType]) -> dict[str, list[str]]:
    versions: dict[str, list[str]] = defaultdict(list)
    for rt in types:
        if rt.group and rt.version not in versions[rt.group]:
            versions[rt.group].append(rt.version)
    for listed in versions.values():
        listed.sort(key=_version_priority)
    return dict(versions)


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA before beta before alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


def core_versions(address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": address}]}


def _group_doc(group: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def group_list(types: list[ResourceType]) -> dict[str, Any]:
    groups = [_group_doc(g, vs) for g, vs in sorted(_group_versions(types).items())]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(types: list[ResourceType], name: str) -> dict[str, Any] | None:
    versions = _group_versions(types).get(name)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(name, versions)}


def resource_list(types: list[ResourceType], group_name: str,
                  version: str) -> dict[str, Any] | None:
    chosen = sorted((t for t in types if t.group == group_name and t.version == version),
                    key=lambda t: t.plural)
    if not chosen:
        return None
    resources: list[dict[str, Any]] = []
    for rt in chosen:
        entry: dict[str, Any] = {"name": rt.plural, "singularName": rt.singular,
                                 "namespaced": rt.namespaced, "kind": rt.kind,
                                 "verbs": list(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        if rt.has_status:
            resources.append({"name": f"{rt.plural}/status", "singularName": "",
                              "namespaced": rt.namespaced, "kind": rt.kind,
                              "verbs": ["get", "patch", "update"]})
        if rt.scale is not None:
            group_, ver = SCALE_API_VERSION.split("/")
            resources.append({"name": f"{rt.plural}/scale", "singularName": "",
                              "namespaced": rt.namespaced, "group": group_, "version": ver,
                              "kind": "Scale", "verbs": ["get", "patch", "update"]})
    gv = f"{group_name}/{version}" if group_name else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}
