"""Resource types the double serves: built-in kinds and what a CRD registers.

A ``ResourceType`` is one (group, version, plural) with its kind, scope, subresources, schema
and printer columns. This module only describes types; storing objects and serving verbs live
elsewhere. Built-ins are the kinds memkube and its chart touch, not the whole core API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ScaleSpec:
    """Where a kind keeps the numbers of its ``/scale`` subresource (JSON paths like ``.spec.x``)."""

    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    format: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    scale: ScaleSpec | None = None
    # Structural openAPIV3Schema of a custom resource version; None for built-ins.
    schema: dict[str, Any] | None = None
    printer_columns: tuple[PrinterColumn, ...] = ()
    custom: bool = False
    # Fields a fieldSelector may name besides metadata.name / metadata.namespace.
    selectable_fields: tuple[str, ...] = ()
    # The storage version of a custom resource (objects are stored with this apiVersion).
    storage_version: str = ""
    # Fields (top-level keys) a strategic-merge patch understands; custom resources have none.
    strategic: bool = True
    verbs: tuple[str, ...] = field(default_factory=lambda: tuple(ALL_VERBS))
    # Where objects live when another API stores them (events.k8s.io Events are core Events).
    storage: tuple[str, str] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: all versions of a group/plural share objects."""
        return self.storage or (self.group, self.plural)

    @property
    def storage_api_version(self) -> str:
        """The apiVersion objects are stored with (what a watch on storage carries)."""
        if self.custom:
            return f"{self.group}/{self.storage_version}"
        return "v1" if self.storage == ("", "events") else self.api_version


def _core(plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, singular=kind.lower(), **kw)


def _grp(group: str, version: str, plural: str, kind: str, namespaced: bool = True,
         **kw: Any) -> ResourceType:
    return ResourceType(group, version, plural, kind, namespaced, singular=kind.lower(), **kw)


_POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
               "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName")
_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion",
                 "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                 "reportingComponent", "source", "type")

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", False, short_names=("ns",), has_status=True,
          selectable_fields=("status.phase",)),
    _core("pods", "Pod", short_names=("po",), categories=("all",), has_status=True,
          selectable_fields=_POD_FIELDS),
    _core("services", "Service", short_names=("svc",), categories=("all",), has_status=True),
    _core("secrets", "Secret", selectable_fields=("type",)),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("events", "Event", short_names=("ev",), selectable_fields=_EVENT_FIELDS),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",),
          has_status=True),
    _core("nodes", "Node", False, short_names=("no",), has_status=True),
    _grp("events.k8s.io", "v1", "events", "Event", short_names=("ev",), storage=("", "events"),
         selectable_fields=tuple(f.replace("involvedObject.", "regarding.")
                                 for f in _EVENT_FIELDS)),
    _grp("apps", "v1", "deployments", "Deployment", short_names=("deploy",),
         categories=("all",), has_status=True,
         scale=ScaleSpec(".spec.replicas", ".status.replicas", ".spec.selector")),
    _grp("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _grp("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _grp("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _grp("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _grp("coordination.k8s.io", "v1", "leases", "Lease"),
    _grp("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",)),
    _grp("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
         has_status=True),
    _grp("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
         False, short_names=("crd", "crds"), has_status=True),
)

CRD_GROUP_RESOURCE = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")
PODS = ("", "pods")

# The GroupVersionKind of the /scale subresource body.
SCALE_API_VERSION = "autoscaling/v1"
