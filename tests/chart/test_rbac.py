"""The operator's RBAC is the least that works.

First the authorizer in rbac.py against hand-written requests (RBAC's own semantics), then
the proof: the real operator runs a pool's life against the API double, once watching every
namespace and once watching one, and each recorded request must be allowed by the chart's
rendered rules for that mode, and each granted permission must have been used.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chartcases import NAMESPACE, by_kind
from rbac import ApiRequest, Grant, check, grants_for

ACCOUNT = "mk-memkube"


def role(
    kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(
    kind: str, role_kind: str, name: str, namespace: str | None = None, account: str = ACCOUNT
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
    }


PODS_RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}


def grants(*objects: dict[str, Any]) -> list[Grant]:
    return grants_for(objects, ACCOUNT, NAMESPACE)


# --- the authorizer ------------------------------------------------------------------------


def test_cluster_role_binding_allows_everywhere_and_cluster_wide() -> None:
    g = grants(
        role("ClusterRole", "r", [PODS_RULE]), binding("ClusterRoleBinding", "ClusterRole", "r")
    )
    report = check(
        [ApiRequest("list", "", "pods"), ApiRequest("get", "", "pods", namespace="a", name="p")], g
    )
    assert report.denied == [] and report.allowed == 2


def test_role_binding_allows_only_its_namespace() -> None:
    g = grants(role("Role", "r", [PODS_RULE], "a"), binding("RoleBinding", "Role", "r", "a"))
    inside = ApiRequest("watch", "", "pods", namespace="a")
    elsewhere = ApiRequest("watch", "", "pods", namespace="b")
    cluster = ApiRequest("watch", "", "pods")
    assert check([inside, elsewhere, cluster], g).denied == [elsewhere, cluster]


def test_role_binding_to_a_cluster_role_is_namespaced() -> None:
    g = grants(
        role("ClusterRole", "r", [PODS_RULE]), binding("RoleBinding", "ClusterRole", "r", "a")
    )
    assert check([ApiRequest("list", "", "pods", namespace="b")], g).denied


def test_verbs_groups_and_subresources_must_match_exactly() -> None:
    rules = [
        {"apiGroups": ["memkube.dev"], "resources": ["workerpools"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    ]
    g = grants(role("ClusterRole", "r", rules), binding("ClusterRoleBinding", "ClusterRole", "r"))
    status = ApiRequest("patch", "memkube.dev", "workerpools", "status", "a", "p")
    wrong_group = ApiRequest("patch", "apps", "workerpools", namespace="a", name="p")
    wrong_verb = ApiRequest("update", "memkube.dev", "workerpools", namespace="a", name="p")
    ok = ApiRequest("delete", "", "pods", namespace="a", name="p")
    assert check([status, wrong_group, wrong_verb, ok], g).denied == [
        status,
        wrong_group,
        wrong_verb,
    ]


def test_wildcards_follow_rbac() -> None:
    rules = [
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]},
    ]
    g = grants(role("ClusterRole", "r", rules), binding("ClusterRoleBinding", "ClusterRole", "r"))
    allowed = [
        ApiRequest("patch", "memkube.dev", "workerpools", "status", "a"),
        ApiRequest("get", "", "pods", "log", "a", "p"),
    ]
    denied = [
        ApiRequest("patch", "memkube.dev", "workerpools", namespace="a"),
        ApiRequest("get", "", "pods", namespace="a", name="p"),
    ]
    assert check(allowed + denied, g).denied == denied


def test_resource_names_never_allow_collection_verbs() -> None:
    rule = {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "create", "list"],
        "resourceNames": ["token"],
    }
    g = grants(role("ClusterRole", "r", [rule]), binding("ClusterRoleBinding", "ClusterRole", "r"))
    named = ApiRequest("get", "", "secrets", namespace="a", name="token")
    other = ApiRequest("get", "", "secrets", namespace="a", name="other")
    create = ApiRequest("create", "", "secrets", namespace="a")
    listing = ApiRequest("list", "", "secrets", namespace="a")
    assert check([named, other, create, listing], g).denied == [other, create, listing]


def test_other_subjects_and_dangling_bindings_grant_nothing() -> None:
    g = grants(
        role("ClusterRole", "r", [PODS_RULE]),
        binding("ClusterRoleBinding", "ClusterRole", "r", account="someone-else"),
        binding("ClusterRoleBinding", "ClusterRole", "missing"),
    )
    assert g == []
    assert check([ApiRequest("list", "", "pods")], g).denied


def test_discovery_is_open_but_other_non_resource_paths_are_not() -> None:
    requests = [
        ApiRequest("get", path="/apis/memkube.dev/v1alpha1"),
        ApiRequest("get", path="/version"),
        ApiRequest("get", path="/metrics"),
    ]
    report = check(requests, [])
    assert [r.path for r in report.denied] == ["/metrics"]


def test_unused_permissions_are_reported_once_across_namespaces() -> None:
    objects = []
    for ns in ("a", "b"):
        objects += [role("Role", "r", [PODS_RULE], ns), binding("RoleBinding", "Role", "r", ns)]
    report = check(
        [
            ApiRequest("get", "", "pods", namespace="a", name="p"),
            ApiRequest("list", "", "pods", namespace="b"),
        ],
        grants(*objects),
    )
    assert {p.verb for p in report.unused} == {"watch"}


def test_records_from_the_double_are_understood() -> None:
    record = {
        "method": "PATCH",
        "path": "/apis/memkube.dev/v1alpha1/namespaces/a/workerpools/p/status",
        "verb": "patch",
        "apiGroup": "memkube.dev",
        "apiVersion": "v1alpha1",
        "resource": "workerpools",
        "subresource": "status",
        "namespace": "a",
        "name": "p",
        "code": 200,
    }
    request = ApiRequest.from_record(record)
    assert request == ApiRequest(
        "patch", "memkube.dev", "workerpools", "status", "a", "p", record["path"]
    )
    discovery = ApiRequest.from_record(
        {
            **record,
            "resource": "",
            "subresource": "",
            "namespace": "",
            "name": "",
            "apiGroup": "",
            "path": "/apis",
            "verb": "get",
        }
    )
    assert discovery.resource == "" and discovery.namespace is None


# --- the chart's rules against a hand-written operator pass --------------------------------


def _chart_grants(rendered: dict[str, Any], case: str) -> list[Grant]:
    return grants_for(rendered[case], ACCOUNT, NAMESPACE)


def test_chart_rules_have_no_wildcards_and_no_cluster_power(rendered: dict[str, Any]) -> None:
    for objects in rendered.values():
        for obj in by_kind(objects, "ClusterRole") + by_kind(objects, "Role"):
            for rule in obj["rules"]:
                assert "*" not in rule["verbs"] + rule["apiGroups"] + rule["resources"]
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
                assert rule["apiGroups"] != ["rbac.authorization.k8s.io"]


def test_namespaced_chart_denies_other_namespaces(rendered: dict[str, Any]) -> None:
    g = _chart_grants(rendered, "namespaced-list")
    inside = ApiRequest("create", "", "pods", namespace="team-a")
    outside = ApiRequest("create", "", "pods", namespace="team-c")
    cluster = ApiRequest("list", "", "pods")
    assert check([inside, outside, cluster], g).denied == [outside, cluster]


# --- the proof: the real operator, the real authorizer -------------------------------------
#
# The chart is installed into the session's real API server and the operator runs with its
# ServiceAccount's token, so the real RBAC authorizer decides. The audit log shows every
# request: none may be refused. Then, for every verb of every rule of the chart's roles, a
# probe ServiceAccount is bound to copies of those roles without it; a SubjectAccessReview
# asks the real authorizer about each request the operator made, and at least one must now be
# refused: no granted verb is unused.

POOL_BODY = {
    "apiVersion": "memkube.dev/v1alpha1",
    "kind": "WorkerPool",
    "metadata": {"name": "etl", "namespace": "team-a"},
    "spec": {"replicas": 2, "worker": {"memoryLimit": "1Gi"}},
}
RBAC = ("rbac.authorization.k8s.io", "v1")


def _session(control_plane: Any, kube: Any, watch: tuple[str, ...], values: dict[str, Any]) -> Any:
    session = pytest.importorskip("operator_session")
    return asyncio.run(
        session.record_operator_session(control_plane, kube, POOL_BODY, watch, values)
    )


@pytest.fixture(scope="module")
def clusterwide(control_plane: Any, kube: Any) -> Any:
    return _session(control_plane, kube, (), {})


@pytest.fixture(scope="module")
def namespaced(control_plane: Any, kube: Any) -> Any:
    # One watched namespace: each watched namespace gets its own copy of the Role, and one
    # pool's life exercises one copy.
    values = {"watch": {"allNamespaces": False, "namespaces": ["team-a"]}}
    return _session(control_plane, kube, ("team-a",), values)


def _objects(manifest: str) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(manifest) if d]


def _review(kube: Any, user: str, request: ApiRequest) -> bool:
    """The real authorizer's answer for ``user`` (a ServiceAccount) making ``request``."""
    namespace = user.split(":")[2]
    spec: dict[str, Any] = {
        "user": user,
        "groups": [
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ],
    }
    if request.resource:
        spec["resourceAttributes"] = {
            "verb": request.verb,
            "group": request.api_group,
            "resource": request.resource,
            "subresource": request.subresource,
            "namespace": request.namespace or "",
            "name": request.name or "",
        }
    else:
        spec["nonResourceAttributes"] = {"verb": request.verb, "path": request.path}
    review = kube.create_object(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    )
    return bool(review["status"].get("allowed"))


def _probe(
    kube: Any, objects: list[dict[str, Any]], tag: str, drop: tuple[str, int, str] | None
) -> str:
    """A ServiceAccount bound like the chart's, to copies of its roles without one verb of
    one rule (``(role key, rule index, verb)``); returns its user name."""
    account = f"probe-{tag}"
    kube.create_object(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": NAMESPACE},
        }
    )
    for obj in objects:
        if obj["kind"] not in ("Role", "ClusterRole"):
            continue
        key = f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        rules = []
        for index, rule in enumerate(obj.get("rules") or []):
            if drop and drop[0] == key and drop[1] == index:
                rule = {**rule, "verbs": [v for v in rule["verbs"] if v != drop[2]]}
                if not rule["verbs"]:
                    continue
            rules.append(rule)
        meta = {**obj["metadata"], "name": f"{account}-{obj['metadata']['name']}"}
        meta.pop("labels", None)
        kube.create_object(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": obj["kind"],
                "metadata": meta,
                "rules": rules,
            }
        )
    for obj in objects:
        if obj["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("name") == ACCOUNT for s in obj.get("subjects") or []):
            continue
        meta = {**obj["metadata"], "name": f"{account}-{obj['metadata']['name']}"}
        meta.pop("labels", None)
        ref = {**obj["roleRef"], "name": f"{account}-{obj['roleRef']['name']}"}
        kube.create_object(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": obj["kind"],
                "metadata": meta,
                "roleRef": ref,
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
            }
        )
    return f"system:serviceaccount:{NAMESPACE}:{account}"


def _unused_verbs(kube: Any, session: Any, tag: str) -> list[str]:
    import time

    objects = _objects(session["manifest"])
    requests = sorted({ApiRequest.from_record(r) for r in session["records"]}, key=str)
    drops = [
        (f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}", i, verb)
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
        for i, rule in enumerate(o.get("rules") or [])
        for verb in rule["verbs"]
    ]
    users = [_probe(kube, objects, f"{tag}-{n}", drop) for n, drop in enumerate(drops)]
    # Created last: once the real authorizer allows this one everything, it has seen the
    # roles and bindings created before it (its informers deliver in order).
    full = _probe(kube, objects, f"{tag}-full", None)
    deadline = time.monotonic() + 30
    while not all(_review(kube, full, r) for r in requests):
        assert time.monotonic() < deadline, "the full copy of the chart's rules denies a request"
        time.sleep(0.2)
    unused = []
    for user, drop in zip(users, drops, strict=True):
        if all(_review(kube, user, r) for r in requests):
            unused.append(f"{drop[0]} rule {drop[1]} verb {drop[2]}")
    return unused


@pytest.mark.slow
def test_operator_watching_all_namespaces_is_never_refused(clusterwide: Any) -> None:
    records = clusterwide["records"]
    assert any(r["verb"] == "create" and r["resource"] == "pods" for r in records)
    assert any(r["verb"] == "patch" and r["subresource"] == "status" for r in records)
    refused = sorted({str(ApiRequest.from_record(r)) for r in records if r["code"] == 403})
    assert refused == [], refused


@pytest.mark.slow
def test_operator_watching_all_namespaces_uses_every_verb_it_is_granted(
    kube: Any, clusterwide: Any
) -> None:
    assert _unused_verbs(kube, clusterwide, "cw") == []


@pytest.mark.slow
def test_operator_watching_one_namespace_is_never_refused(namespaced: Any) -> None:
    records = namespaced["records"]
    assert all(r["namespace"] in (None, "team-a") for r in records if r["resource"])
    refused = sorted({str(ApiRequest.from_record(r)) for r in records if r["code"] == 403})
    assert refused == [], refused


@pytest.mark.slow
def test_operator_watching_one_namespace_uses_every_verb_it_is_granted(
    kube: Any, namespaced: Any
) -> None:
    assert _unused_verbs(kube, namespaced, "ns") == []
