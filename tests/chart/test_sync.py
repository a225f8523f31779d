"""The copies do not drift: the chart's CRD and deploy/ are what charts/sync.py makes from
their sources, and the plain-manifest install builds with kustomize into valid objects."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chartcases import CHART, ROOT

CRD_SOURCE = ROOT / "operator" / "memkube_operator" / "crds" / "workerpools.memkube.dev.yaml"
DEPLOY = ROOT / "deploy"


def test_crd_copies_are_identical_to_the_operators() -> None:
    source = CRD_SOURCE.read_bytes()
    for copy in (CHART / "crds" / CRD_SOURCE.name, DEPLOY / "crds" / CRD_SOURCE.name):
        assert copy.read_bytes() == source, f"{copy} drifted: run .venv/bin/python charts/sync.py"
    assert [p.name for p in (CHART / "crds").iterdir()] == [CRD_SOURCE.name]


def test_generated_files_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "charts" / "sync.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("version", ["1.28.0", "1.33.0"])
def test_crd_is_a_valid_custom_resource_definition(version: str) -> None:
    kubernetes_validate.validate(yaml.safe_load(CRD_SOURCE.read_text()), version, strict=True)


@pytest.fixture(scope="module")
def kustomized() -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH (it builds kustomizations offline)")
    proc = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def test_kustomization_installs_crd_namespace_and_operator(
    kustomized: list[dict[str, Any]],
) -> None:
    kinds = sorted(o["kind"] for o in kustomized)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
        ]
    )
    namespaced = [o for o in kustomized if o["kind"] in ("ServiceAccount", "Deployment")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"memkube-system"}
    for obj in kustomized:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_kubectl_apply_k_installs_into_an_api_server(control_plane: Any, kube: Any) -> None:
    """The documented command, against the real API server: every object is created and
    admitted as kubectl sends it (client-side apply), including the CRD the operator will
    watch (already there: the control plane made it, so kubectl reports it configured)."""
    from localkube import ensure

    api = kube
    if True:
        subprocess.run(
            [
                str(ensure(build=False).path("kubectl")),
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "apply",
                "-k",
                str(DEPLOY),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        deployment = api.get_object("apps", "v1", "deployments", "memkube-system", "memkube")
        assert deployment is not None
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:3] == ["operator", "run", "--all-namespaces"]
        crd = api.get_object(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", None, CRD_SOURCE.stem
        )
        assert crd is not None and crd["spec"]["names"]["kind"] == "WorkerPool"
        role = api.get_object("rbac.authorization.k8s.io", "v1", "clusterroles", None, "memkube")
        assert role is not None
        assert api.get_object("", "v1", "serviceaccounts", "memkube-system", "memkube") is not None
