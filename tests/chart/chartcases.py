"""The value sets the chart tier renders: ones users install with, ones the schema refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "memkube"
RELEASE = "mk"
NAMESPACE = "memkube-system"

# Value sets users are expected to install with; each must render to valid objects.
VALID: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-release-namespace": {"watch": {"allNamespaces": False}},
    "namespaced-list": {"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}},
    "everything-on": {
        "image": {"repository": "registry.example/memkube", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "fullnameOverride": "memkube-operator",
        "workerPool": {"defaultImage": "registry.example/memkube-with-numpy:1.2.3"},
        "operator": {
            "logLevel": "DEBUG",
            "extraArgs": ["--verbose"],
            "extraEnv": [{"name": "EXTRA", "value": "1"}],
            "podAnnotations": {"a": "b"},
            "podLabels": {"team": "data"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
            "resources": {
                "requests": {"cpu": "100m", "memory": "200Mi"},
                "limits": {"memory": "400Mi"},
            },
        },
        "serviceAccount": {"annotations": {"iam": "role"}},
        "networkPolicy": {
            "enabled": True,
            "clientNamespaceSelector": {"matchLabels": {"memkube.dev/clients": "allowed"}},
            "metricsFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "namespaces": ["team-a"],
        },
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "interval": "15s",
                "labels": {"release": "prom"},
                "tokenSecret": {"name": "memkube-metrics", "key": "token"},
            },
            "podMonitor": {"enabled": True, "interval": "1m", "labels": {"release": "prom"}},
        },
    },
    "namespaced-with-policy-and-monitors": {
        "watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]},
        "networkPolicy": {"enabled": True},
        "metrics": {
            "serviceMonitor": {"enabled": True, "interval": "30s"},
            "podMonitor": {"enabled": True, "interval": "30s"},
        },
    },
    "policy-watching-everything": {"networkPolicy": {"enabled": True}},
    "bring-your-own-account": {
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "platform-memkube"},
    },
}

# Value sets the schema accepts but the templates refuse, with a part of the refusal.
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "two-metrics-tokens": (
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "tokenSecret": {"name": "a", "key": "t"}},
                "podMonitor": {"enabled": True, "tokenSecret": {"name": "b", "key": "t"}},
            }
        },
        "must name the same Secret and key",
    ),
}

# Value sets the schema must refuse, with the JSON pointer Helm names in its refusal.
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "two-operators": ({"operator": {"replicas": 2}}, "/operator/replicas"),
    "pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "unknown-key": ({"operatr": {"replicas": 1}}, "operatr"),
    "bad-namespace": (
        {"watch": {"allNamespaces": False, "namespaces": ["Team_A"]}},
        "/watch/namespaces/0",
    ),
    "bad-interval": (
        {"metrics": {"serviceMonitor": {"enabled": True, "interval": "often"}}},
        "/metrics/serviceMonitor/interval",
    ),
    "bad-quantity": (
        {"operator": {"resources": {"limits": {"memory": "lots"}}}},
        "/operator/resources/limits/memory",
    ),
    # null is how a user deletes a default map in Helm; an empty map would merge to the default.
    "no-client-labels": (
        {"networkPolicy": {"enabled": True, "clientLabels": None}},
        "clientLabels",
    ),
    "string-bool": ({"watch": {"allNamespaces": "yes"}}, "/watch/allNamespaces"),
    "low-port": ({"operator": {"healthPort": 80}}, "/operator/healthPort"),
}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]
