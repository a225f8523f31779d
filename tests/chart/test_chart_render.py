"""The chart as Helm renders it: lint, schema-valid objects, labels, pod security, and what each
value changes. Values that must be refused are in test_chart_values.py; RBAC in test_rbac.py."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from chartcases import NAMESPACE, RELEASE, VALID, by_kind

KUBE_VERSIONS = ["1.28.0", "1.30.0", "1.33.0"]
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}

# The Prometheus Operator kinds are not in kubernetes-validate's schemas. This is the part
# of their published v1 API this chart uses, closed so that a typo or wrong nesting fails.
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": {"type": "object"}, "matchExpressions": {"type": "array"}},
}
_AUTH = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "credentials"],
    "properties": {
        "type": {"const": "Bearer"},
        "credentials": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "key"],
            "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
        },
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "interval": {
            "type": "string",
            # Prometheus' duration syntax, as the monitoring.coreos.com CRDs validate it.
            "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
            "(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
        },
        "authorization": _AUTH,
    },
}
_NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}


def _monitor_schema(kind: str, endpoints: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints],
                "properties": {
                    "selector": _SELECTOR,
                    "namespaceSelector": _NAMESPACE_SELECTOR,
                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


MONITOR_SCHEMAS = {
    "ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
    "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
}


def _pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in by_kind(objects, "Deployment")]


def _operator(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_lint_is_clean(helm_results: dict[str, Any]) -> None:
    lint = helm_results["lint"]
    assert lint["TotalChartsLinted"] == 1
    assert not lint["Errors"]
    # Helm's severities: 1 info, 2 warning, 3 error. Only the "icon is recommended" info may stay.
    worse = [m for m in lint["Messages"] if m["Severity"] >= 2]
    assert worse == []


@pytest.mark.parametrize("case", VALID)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_is_valid_kubernetes(
    rendered: dict[str, Any], case: str, version: str
) -> None:
    objects = rendered[case]
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            jsonschema.validate(obj, MONITOR_SCHEMAS[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("case", VALID)
def test_standard_labels_everywhere(rendered: dict[str, Any], case: str) -> None:
    for obj in rendered[case]:
        labels = obj["metadata"]["labels"]
        assert STANDARD_LABELS <= set(labels), obj["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    for spec_owner in by_kind(rendered[case], "Deployment"):
        pod_labels = spec_owner["spec"]["template"]["metadata"]["labels"]
        assert STANDARD_LABELS <= set(pod_labels)
        selector = spec_owner["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        # The selector is immutable on a Deployment: no version in it, or upgrades break.
        assert "app.kubernetes.io/version" not in selector and "helm.sh/chart" not in selector


@pytest.mark.parametrize("case", VALID)
def test_pods_pass_restricted_pod_security(rendered: dict[str, Any], case: str) -> None:
    specs = _pod_specs(rendered[case])
    assert specs
    for spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] > 0
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert not sc["capabilities"].get("add")
            assert not sc.get("privileged")
            assert sc.get("runAsUser", pod["runAsUser"]) != 0
            assert "hostPort" not in str(container.get("ports", []))


@pytest.mark.parametrize("case", VALID)
def test_operator_has_probes_and_resources(rendered: dict[str, Any], case: str) -> None:
    container = _operator(rendered[case])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "health"
    port = next(p for p in container["ports"] if p["name"] == "health")["containerPort"]
    assert f"--liveness=http://0.0.0.0:{port}/healthz" in container["args"]
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    # A read-only root needs a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_defaults_watch_all_namespaces_with_a_cluster_role(rendered: dict[str, Any]) -> None:
    objects = rendered["defaults"]
    container = _operator(objects)
    assert container["args"][:3] == ["operator", "run", "--all-namespaces"]
    assert container["image"] == "ghcr.io/memkube/memkube:0.1.0"
    assert _env(container)["MEMKUBE_DEFAULT_IMAGE"] == "ghcr.io/memkube/memkube:0.1.0"
    assert [o["metadata"]["name"] for o in by_kind(objects, "ClusterRole")] == ["mk-memkube"]
    (binding,) = by_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mk-memkube", "namespace": NAMESPACE}
    ]
    assert by_kind(objects, "Role") == [] and by_kind(objects, "RoleBinding") == []
    for kind in ("NetworkPolicy", "ServiceMonitor", "PodMonitor"):
        assert by_kind(objects, kind) == []


@pytest.mark.parametrize(
    ("case", "namespaces"),
    [("namespaced-release-namespace", [NAMESPACE]), ("namespaced-list", ["team-a", "team-b"])],
)
def test_namespaced_mode_grants_only_the_watched_namespaces(
    rendered: dict[str, Any], case: str, namespaces: list[str]
) -> None:
    objects = rendered[case]
    # Cluster-wide, only what kopf observes: read-only, and nothing inside any namespace.
    (observer,) = by_kind(objects, "ClusterRole")
    assert observer["metadata"]["name"] == "mk-memkube-observer"
    assert {r["resources"][0] for r in observer["rules"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert all(r["verbs"] == ["list", "watch"] for r in observer["rules"])
    (cluster_binding,) = by_kind(objects, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == "mk-memkube-observer"
    assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role")) == namespaces
    assert sorted(b["metadata"]["namespace"] for b in by_kind(objects, "RoleBinding")) == namespaces
    args = _operator(objects)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace=")] == [
        f"--namespace={n}" for n in namespaces
    ]


def test_values_reach_the_objects(rendered: dict[str, Any]) -> None:
    objects = rendered["everything-on"]
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == "memkube-operator"
    pod = deployment["spec"]["template"]
    container = _operator(objects)
    assert container["image"] == "registry.example/memkube:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"][-1] == "--verbose"
    env = _env(container)
    assert env["MEMKUBE_DEFAULT_IMAGE"] == "registry.example/memkube-with-numpy:1.2.3"
    assert env["MEMKUBE_LOG_LEVEL"] == "DEBUG" and env["EXTRA"] == "1"
    assert container["resources"]["limits"]["memory"] == "400Mi"
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    (account,) = by_kind(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"iam": "role"}
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_monitors_scrape_schedulers_and_workers(rendered: dict[str, Any]) -> None:
    objects = rendered["everything-on"]
    (service_monitor,) = by_kind(objects, "ServiceMonitor")
    (pod_monitor,) = by_kind(objects, "PodMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "prom"
    assert service_monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {"name": "memkube-metrics", "key": "token"}
    assert endpoint["interval"] == "15s" and endpoint["path"] == "/metrics"
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert "authorization" not in pod_endpoint and pod_endpoint["interval"] == "1m"
    scoped = rendered["namespaced-with-policy-and-monitors"]
    for monitor in by_kind(scoped, "ServiceMonitor") + by_kind(scoped, "PodMonitor"):
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_the_monitors_token_reaches_the_operator(rendered: dict[str, Any]) -> None:
    # The operator copies it into each pool's Secret, from where pods read it.
    assert _env(_operator(rendered["everything-on"]))["MEMKUBE_OPERATOR_METRICS_TOKEN"] == {
        "secretKeyRef": {"name": "memkube-metrics", "key": "token"}
    }
    for case in ("namespaced-with-policy-and-monitors", "policy-watching-everything"):
        assert "MEMKUBE_OPERATOR_METRICS_TOKEN" not in _env(_operator(rendered[case]))


def test_bring_your_own_account_renders_no_rbac(rendered: dict[str, Any]) -> None:
    objects = rendered["bring-your-own-account"]
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Deployment"}
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "platform-memkube"


def test_notes_tell_what_was_installed(helm_results: dict[str, Any]) -> None:
    notes = helm_results["defaults"]["notes"]
    assert f'release "{RELEASE}" in namespace "{NAMESPACE}"' in notes
    assert "watches every namespace" in notes
    assert f"rollout status deployment/{RELEASE}-memkube" in notes
    scoped = helm_results["namespaced-with-policy-and-monitors"]["notes"]
    assert "these namespaces: team-a, team-b" in scoped
    labels = '{"memkube.dev/client":"true"}'
    assert (
        f"NetworkPolicy is on in team-a, team-b: client pods must carry the labels {labels}"
        in scoped
    )
    assert "not covered" not in scoped
    everywhere = helm_results["policy-watching-everything"]["notes"]
    assert f"NetworkPolicy is on in {NAMESPACE}:" in everywhere
    assert "Pools in other namespaces are not covered" in everywhere
