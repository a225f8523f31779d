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


# --- the proof: a real operator's requests -------------------------------------------------


def _session(watch: tuple[str, ...]) -> list[dict[str, Any]]:
    pytest.importorskip("apidouble", reason="the API double (tests/support/apidouble) is missing")
    pytest.importorskip("memkube_operator.handlers", reason="the operator's handlers are missing")
    session = pytest.importorskip("operator_session")
    body = {
        "apiVersion": "memkube.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": session.POOL, "namespace": "team-a"},
        "spec": {"replicas": 2, "worker": {"memoryLimit": "1Gi"}},
    }
    return asyncio.run(session.record_operator_session(body, watch))


@pytest.fixture(scope="module")
def clusterwide_requests() -> list[ApiRequest]:
    return [ApiRequest.from_record(r) for r in _session(())]


@pytest.fixture(scope="module")
def namespaced_requests() -> list[ApiRequest]:
    return [ApiRequest.from_record(r) for r in _session(("team-a",))]


def _explain(report: Any) -> str:
    denied = sorted({str(r) for r in report.denied})
    return (
        "denied:\n  " + "\n  ".join(denied) + "\nunused:\n  " + "\n  ".join(map(str, report.unused))
    )


@pytest.mark.slow
def test_operator_watching_all_namespaces_needs_exactly_the_cluster_role(
    rendered: dict[str, Any], clusterwide_requests: list[ApiRequest]
) -> None:
    assert any(r.verb == "create" and r.resource == "pods" for r in clusterwide_requests)
    report = check(clusterwide_requests, _chart_grants(rendered, "defaults"))
    assert report.denied == [] and report.unused == [], _explain(report)


@pytest.mark.slow
def test_operator_watching_one_namespace_needs_exactly_its_role(
    rendered: dict[str, Any], namespaced_requests: list[ApiRequest]
) -> None:
    assert all(r.namespace in (None, "team-a") for r in namespaced_requests if r.resource)
    report = check(namespaced_requests, _chart_grants(rendered, "namespaced-list"))
    assert report.denied == [], _explain(report)
    assert report.unused == [], _explain(report)
