"""Kubernetes RBAC authorization, enough to prove the chart's rules are the least that work.

Given rendered chart objects and a log of API requests an operator made, `check` answers two
questions: which requests would the API server have refused (403), and which permissions did
no request use. The authorizer follows the RBAC rules of the Kubernetes docs:

- a ClusterRoleBinding grants its ClusterRole's rules in every namespace and on
  cluster-scoped resources; a RoleBinding grants its Role's (or a ClusterRole's) rules only
  in the binding's namespace;
- a rule matches when verb, API group and resource (``pods``, or ``pods/log`` for a
  subresource) are listed or ``*``; ``resourceNames`` limits it to named objects, so it can
  never allow create, list, watch or deletecollection;
- discovery (``/api``, ``/apis``, ``/version``, ``/openapi``) is open to every authenticated
  user through the built-in ``system:discovery`` role, so non-resource requests to those
  paths are allowed without a chart rule.

Not covered: aggregation, escalation checks, impersonation, non-resource rules of the chart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DISCOVERY_PREFIXES = ("/api", "/apis", "/version", "/openapi")
# Verbs that act on a collection, where no object name exists to check resourceNames against.
COLLECTION_VERBS = frozenset({"create", "list", "watch", "deletecollection"})


@dataclass(frozen=True)
class ApiRequest:
    """One request as the RBAC authorizer sees it."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None
    path: str = ""  # only for non-resource requests (discovery)

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        if not self.resource:
            return f"{self.verb} {self.path}"
        where = f" in {self.namespace}" if self.namespace else " (cluster)"
        group = self.api_group or "core"
        return f"{self.verb} {group}/{self.full_resource}{where}" + (
            f" {self.name}" if self.name else ""
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | Any) -> ApiRequest:
        """From a request-log record: a mapping or an object, camelCase or snake_case keys."""

        def get(*keys: str) -> Any:
            for key in keys:
                value = (
                    record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)
                )
                if value is not None:
                    return value
            return None

        return cls(
            verb=get("verb"),
            api_group=get("api_group", "apiGroup", "group") or "",
            resource=get("resource") or "",
            subresource=get("subresource") or "",
            namespace=get("namespace") or None,
            name=get("name") or None,
            path=get("path") or "",
        )


@dataclass(frozen=True)
class Permission:
    """One (group, resource, verb) a role grants; the unit in which unused grants are reported."""

    role: str
    api_group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.role}: {self.verb} {self.api_group or 'core'}/{self.resource}"


@dataclass(frozen=True)
class Grant:
    """A rule of a role, as bound to the subject: where it applies and what it allows."""

    role: str  # "ClusterRole/name" or "Role/namespace/name"
    namespace: str | None  # None: every namespace and cluster-scoped resources
    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    resource_names: frozenset[str] = frozenset()

    def allows(self, request: ApiRequest) -> bool:
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        if not (_listed(request.verb, self.verbs) and _listed(request.api_group, self.api_groups)):
            return False
        if not any(_resource_matches(pattern, request) for pattern in self.resources):
            return False
        if self.resource_names:
            return request.verb not in COLLECTION_VERBS and request.name in self.resource_names
        return True

    def used_permissions(self, request: ApiRequest) -> set[Permission]:
        """The permissions of this grant that the (allowed) request exercised."""
        return {
            Permission(self.role, group, resource, verb)
            for group in self.api_groups
            for resource in self.resources
            for verb in self.verbs
            if _listed(request.api_group, {group})
            and _listed(request.verb, {verb})
            and _resource_matches(resource, request)
        }

    def permissions(self) -> set[Permission]:
        return {
            Permission(self.role, g, r, v)
            for g in self.api_groups
            for r in self.resources
            for v in self.verbs
        }


@dataclass
class Report:
    denied: list[ApiRequest] = field(default_factory=list)
    unused: list[Permission] = field(default_factory=list)
    allowed: int = 0


def _listed(value: str, allowed: Iterable[str]) -> bool:
    allowed = set(allowed)
    return "*" in allowed or value in allowed


def _resource_matches(pattern: str, request: ApiRequest) -> bool:
    if pattern == "*" or pattern == request.full_resource:
        return True
    base, _, sub = pattern.partition("/")
    if not sub:
        return False
    if base == "*":
        return sub == request.subresource
    return sub == "*" and base == request.resource and bool(request.subresource)


def grants_for(
    objects: Iterable[Mapping[str, Any]], account: str, account_namespace: str
) -> list[Grant]:
    """Every rule bound to ServiceAccount account_namespace/account by these objects."""
    objects = list(objects)
    roles = {
        (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]): obj
        for obj in objects
        if obj["kind"] in ("Role", "ClusterRole")
    }
    grants: list[Grant] = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": account, "namespace": account_namespace}
        if not any(_same_subject(s, subject) for s in binding.get("subjects", [])):
            continue
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            continue  # a binding to a role nobody created grants nothing
        label = "/".join(p for p in (ref["kind"], role_ns, ref["name"]) if p)
        for rule in role.get("rules", []):
            if "nonResourceURLs" in rule:
                continue
            grants.append(
                Grant(
                    role=label,
                    namespace=scope,
                    api_groups=frozenset(rule.get("apiGroups", [])),
                    resources=frozenset(rule.get("resources", [])),
                    verbs=frozenset(rule["verbs"]),
                    resource_names=frozenset(rule.get("resourceNames", [])),
                )
            )
    return grants


def _same_subject(subject: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    return all(subject.get(k) == v for k, v in wanted.items())


def check(requests: Iterable[ApiRequest], grants: list[Grant]) -> Report:
    """Which requests RBAC would deny, and which granted permissions no request used."""
    report = Report()
    used: set[tuple[str, str, str]] = set()
    for request in requests:
        if not request.resource:
            if request.path.startswith(DISCOVERY_PREFIXES):
                report.allowed += 1
            else:
                report.denied.append(request)
            continue
        matching = [g for g in grants if g.allows(request)]
        if not matching:
            report.denied.append(request)
            continue
        report.allowed += 1
        for grant in matching:
            used |= {(p.api_group, p.resource, p.verb) for p in grant.used_permissions(request)}
    # A permission repeated in several namespaces' Roles is one permission: used if used anywhere.
    everything = {p for g in grants for p in g.permissions()}
    report.unused = sorted(
        (p for p in everything if (p.api_group, p.resource, p.verb) not in used),
        key=str,
    )
    return report
