"""What the API server itself fills in or checks on built-in kinds.

Defaults a client would see from a real server on the kinds memkube uses (pod restart policy
and QoS status, service cluster IPs and port defaults, secret stringData folding, deployment
strategy, namespace phase), name validation (RFC 1123 subdomain or label), and which kinds
carry ``metadata.generation``. Not covered: the full built-in validation of each kind.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import re
from typing import Any

from .errors import Cause, field_invalid
from .resources import ResourceType

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_KINDS = {"namespaces", "services"}
# Built-in kinds whose metadata.generation tracks spec changes (custom resources always do).
_GENERATION_KINDS = {"deployments", "customresourcedefinitions"}
_ip_counter = itertools.count(1)


def name_causes(rt: ResourceType, name: str) -> list[Cause]:
    if rt.plural in _LABEL_KINDS:
        if len(name) > 63 or not re.fullmatch(_LABEL, name):
            return [field_invalid(
                "metadata.name", name,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
                f"  or '123-abc', regex used for validation is '{_LABEL}')")]
        return []
    if len(name) > 253 or not re.fullmatch(_SUBDOMAIN, name):
        return [field_invalid(
            "metadata.name", name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{_SUBDOMAIN}')")]
    return []


def tracks_generation(rt: ResourceType) -> bool:
    return rt.custom or rt.plural in _GENERATION_KINDS


def _pod(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": _qos(spec)}


def _qos(spec: dict[str, Any]) -> str:
    containers = spec.get("containers", [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all((r.get("limits") or {}).get(k) is not None and
            (r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k)) ==
            (r.get("limits") or {}).get(k) for k in ("cpu", "memory"))
        for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


def _service(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    # Cluster IPs come from loopback so that a client dialling one never leaves the machine.
    old_spec = (old or {}).get("spec") or {}
    if old_spec.get("clusterIP") and not spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
    if spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
        spec["clusterIP"] = str(ipaddress.ip_address("127.0.2.0") + next(_ip_counter) % 250 + 1)
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})


def _secret(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {}) if string_data else obj.get("data")
    for key, value in string_data.items():
        assert data is not None
        data[key] = base64.b64encode(str(value).encode()).decode()


def _deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("strategy", {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})


def _namespace(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    if old is None:
        obj["status"] = {"phase": "Active"}


def _pvc(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    if old is None:
        obj["status"] = {"phase": "Pending"}


_DEFAULTERS = {
    ("", "pods"): _pod, ("", "services"): _service, ("", "secrets"): _secret,
    ("apps", "deployments"): _deployment, ("", "namespaces"): _namespace,
    ("", "persistentvolumeclaims"): _pvc,
}


def apply_builtin_defaults(rt: ResourceType, obj: dict[str, Any],
                           old: dict[str, Any] | None) -> None:
    """Fill server-side defaults in place; ``old`` is None on create."""
    defaulter = _DEFAULTERS.get(rt.key)
    if defaulter is not None:
        defaulter(obj, old)
