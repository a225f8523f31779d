"""A release's life with Helm's own library against the real API server: install watching every
namespace, upgrade to watching one, uninstall. Upgrades must not trip over immutable fields
(the Deployment's selector), RBAC must follow the watch mode, and the CRD must outlive the
release (Helm never deletes crds/, so WorkerPools survive an uninstall)."""

from __future__ import annotations

from typing import Any

import pytest
from chartcases import CHART, NAMESPACE, RELEASE
from helmrender import lifecycle


@pytest.fixture(scope="module")
def seen(control_plane: Any) -> dict[str, Any]:
    return lifecycle(
        CHART,
        {
            "release": RELEASE,
            "namespace": NAMESPACE,
            "namespaces": [NAMESPACE, "team-a"],
            "values": {},
            "upgrade_values": {"watch": {"allNamespaces": False, "namespaces": ["team-a"]}},
        },
        control_plane,
    )


def test_install_creates_the_crd_and_a_cluster_wide_operator(seen: dict[str, Any]) -> None:
    install = seen["install"]
    assert install["status"] == "deployed"
    assert install["crd"] is True
    assert install["deployments"] == [f"{RELEASE}-memkube"]
    assert install["args"][0][:3] == ["operator", "run", "--all-namespaces"]
    assert install["clusterroles"] == [f"{RELEASE}-memkube"] and install["roles"] == []


def test_upgrade_to_one_namespace_swaps_the_rbac(seen: dict[str, Any]) -> None:
    upgrade = seen["upgrade"]
    assert "error" not in upgrade, upgrade.get("error")
    assert upgrade["status"] == "deployed"
    assert "--namespace=team-a" in upgrade["args"][0]
    assert upgrade["clusterroles"] == [f"{RELEASE}-memkube-observer"]
    assert upgrade["roles"] == [f"team-a/{RELEASE}-memkube"]


def test_uninstall_leaves_only_the_crd(seen: dict[str, Any]) -> None:
    uninstall = seen["uninstall"]
    assert "error" not in uninstall, uninstall.get("error")
    assert uninstall["deployments"] == [] and uninstall["roles"] == []
    assert uninstall["clusterroles"] == []
    assert uninstall["crd"] is True
