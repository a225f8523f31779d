"""The chart's pool-facing objects agree with what the operator really creates.

The NetworkPolicy, ServiceMonitor and PodMonitor select pods and Services the chart never
renders: the operator builds them. So this builds a pool with the operator's own pure
builders and evaluates the chart's selectors and port references against those objects.
Also: the chart's default image and pod user are the operator's and the image's.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from chartcases import CHART, ROOT, by_kind

builders = pytest.importorskip(
    "memkube_operator.builders", reason="operator builders not built yet"
)
settings = pytest.importorskip("memkube_operator.settings")
spec_module = pytest.importorskip("memkube_operator.spec")

OPERATOR_POD_LABELS = {
    "app.kubernetes.io/name": "memkube",
    "app.kubernetes.io/instance": "mk",
    "app.kubernetes.io/component": "operator",
}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels AND every matchExpression)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


@pytest.fixture(scope="module")
def pool_objects() -> list[dict[str, Any]]:
    body = {
        "apiVersion": "memkube.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "etl", "namespace": "team-a", "uid": "0000-1111"},
        "spec": {"replicas": 2, "worker": {"memoryLimit": "1Gi"}},
    }
    pool = spec_module.parse_pool(body)
    return list(builders.build_all(pool, settings.PodDefaults(), "token"))


def _pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(objects, "Pod")


def _container_ports(pod: dict[str, Any]) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])
    }


def test_network_policy_guards_exactly_the_pool_pods(
    rendered: dict[str, Any], pool_objects: list[dict[str, Any]]
) -> None:
    (policy,) = by_kind(rendered["everything-on"], "NetworkPolicy")
    spec = policy["spec"]
    pods = _pods(pool_objects)
    assert len(pods) == 3  # scheduler and two workers
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert matches(spec["podSelector"], labels), labels
    assert not matches(spec["podSelector"], OPERATOR_POD_LABELS)
    # Every port a pool pod listens on is one the policy opens (and nothing else).
    listening = {port for pod in pods for port in _container_ports(pod).values()}
    opened = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    assert listening == opened == {8786, 8788}


def test_network_policy_admits_pool_peers_clients_and_operator_only(
    rendered: dict[str, Any], pool_objects: list[dict[str, Any]]
) -> None:
    (policy,) = by_kind(rendered["namespaced-with-policy-and-monitors"], "NetworkPolicy")[:1]
    peers_rule, operator_rule = policy["spec"]["ingress"]
    worker = next(
        p
        for p in _pods(pool_objects)
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    )

    def admitted(rule: dict[str, Any], labels: dict[str, str]) -> bool:
        return any(
            "podSelector" in peer and matches(peer["podSelector"], labels) for peer in rule["from"]
        )

    assert admitted(peers_rule, worker["metadata"]["labels"])
    assert admitted(peers_rule, {"memkube.dev/client": "true", "app": "notebook"})
    assert not admitted(peers_rule, {"app": "notebook"})
    assert not admitted(peers_rule, OPERATOR_POD_LABELS)
    # The operator only reaches the scheduler (retire, pool snapshot), from its own namespace.
    assert admitted(operator_rule, OPERATOR_POD_LABELS)
    assert [p["port"] for p in operator_rule["ports"]] == [8786]
    (peer,) = operator_rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "memkube-system"
    }


def test_monitors_select_the_scheduler_service_and_worker_pods(
    rendered: dict[str, Any], pool_objects: list[dict[str, Any]]
) -> None:
    objects = rendered["everything-on"]
    (service_monitor,) = by_kind(objects, "ServiceMonitor")
    (pod_monitor,) = by_kind(objects, "PodMonitor")
    services = by_kind(pool_objects, "Service")
    assert services
    selected = [
        s for s in services if matches(service_monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert selected == services
    port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert {e["port"] for e in service_monitor["spec"]["endpoints"]} <= port_names

    workers = [
        p
        for p in _pods(pool_objects)
        if matches(pod_monitor["spec"]["selector"], p["metadata"]["labels"])
    ]
    assert len(workers) == 2
    for worker in workers:
        assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        names = set(_container_ports(worker))
        assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} <= names


def test_chart_defaults_match_the_operator_and_the_image() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert f"{values['image']['repository']}:{chart['appVersion']}" == settings.DEFAULT_IMAGE
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    uid = int(re.search(r"runAsUser: (\d+)", deployment).group(1))
    assert uid == settings.PodDefaults().run_as_user
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^USER {uid}:{uid}$", dockerfile, re.MULTILINE)


def test_notes_name_what_the_operator_creates(helm_results: dict[str, Any]) -> None:
    naming = pytest.importorskip("memkube_operator.naming")
    notes = helm_results["defaults"]["notes"]
    assert f"svc/{naming.scheduler_name('<name>')} 8786:8786" in notes
    assert f"secret -n <namespace> {naming.secret_name('<name>')} " in notes
    token_key = pytest.importorskip("memkube_operator.builders.common").TOKEN_KEY
    assert f"{{.data.{token_key}}}" in notes


def test_client_namespaces_add_to_the_pools_own(rendered: dict[str, Any]) -> None:
    (policy,) = by_kind(rendered["everything-on"], "NetworkPolicy")
    peers = policy["spec"]["ingress"][0]["from"]
    clients = [
        p for p in peers if p["podSelector"].get("matchLabels") == {"memkube.dev/client": "true"}
    ]
    assert [c.get("namespaceSelector") for c in clients] == [
        None,
        {"matchLabels": {"memkube.dev/clients": "allowed"}},
    ]
