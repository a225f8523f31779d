"""Render, lint, install, upgrade and uninstall the chart with Helm's own Go library
(helm-sdkpy), in a child process, against a real API server.

helm-sdkpy has no `helm template`: rendering is an `Install` into a cluster, and the manifest
comes back in the release. The cluster is the real control plane of tests/support/localkube
(the session's, or a temporary one for charts/sync.py), with Helm's ordinary Secret release
driver, so every object is really created and admitted by the real server: namespaced
objects need their namespace, and each case is uninstalled (waiting) before the next.
The WorkerPool CRD is already there (the control plane creates it; Helm skips an existing
crds/ entry); schemaless stand-in CRDs let the Prometheus Operator's kinds (ServiceMonitor,
PodMonitor) be installed.

Why a child process: the 120 MB Go library stays out of the test process, and Helm reads its
environment once when the library loads.

Usage (what `render_cases` does for tests)::

    echo '{"chart": "...", "kubeconfig": "...", "cases": [{"release": "r",
           "namespace": "ns", "values": {}}]}' | python tests/chart/helmrender.py

prints one JSON result per case: {"manifest": str, "notes": str} or {"error": str}, and
{"lint": {...}} first when "lint": true is asked. `lifecycle` instead installs, upgrades and
uninstalls one release and reports what the API held after each step.

Not covered: what the rendered objects mean; the tests check that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUPPORT = HERE.parents[1] / "tests" / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from localkube import ControlPlane
from localkube.crds import WORKERPOOL_CRD

# Kinds the chart may render that a bare cluster does not serve: the Prometheus Operator's.
STAND_INS = [
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ("monitoring.coreos.com", "PodMonitor", "podmonitors"),
]
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@contextlib.contextmanager
def _cluster(plane: ControlPlane | None) -> Iterator[ControlPlane]:
    """The given control plane, or a temporary one for the duration."""
    if plane is not None:
        yield plane
        return
    with tempfile.TemporaryDirectory(prefix="memkube-helm-") as tmp:
        started = ControlPlane(Path(tmp), crds=(WORKERPOOL_CRD,)).start()
        try:
            yield started
        finally:
            started.stop()


def run_child(request: dict[str, Any], plane: ControlPlane | None = None) -> list[dict[str, Any]]:
    """Run this module in a child against ``plane`` (or a temporary control plane); its JSON
    lines, parsed."""
    with _cluster(plane) as cluster:
        return _run_child({**request, "kubeconfig": str(cluster.kubeconfig)})


def _run_child(request: dict[str, Any]) -> list[dict[str, Any]]:
    path = os.pathsep.join(p for p in (str(SUPPORT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KUBECONFIG": request["kubeconfig"], "PYTHONPATH": path}
    env.pop("HELM_DRIVER", None)  # Helm's default: release Secrets in the real cluster
    proc = subprocess.run(
        [sys.executable, str(Path(__file__))],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helm child failed ({proc.returncode}):\n{proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def lifecycle(
    chart: Path, plan: dict[str, Any], plane: ControlPlane | None = None
) -> dict[str, Any]:
    """Install, upgrade and uninstall one release (see _lifecycle); what was seen after each."""
    (seen,) = run_child({"chart": str(chart), "lifecycle": plan, "cases": []}, plane)
    return seen


def render_cases(
    chart: Path,
    cases: list[dict[str, Any]],
    lint: bool = False,
    plane: ControlPlane | None = None,
) -> list[dict[str, Any]]:
    """Render every case (and lint first if asked); one result per case."""
    return run_child({"chart": str(chart), "cases": cases, "lint": lint}, plane)


def _stand_in_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """A kind the cluster does not serve, as a schemaless CRD: Helm can map and create it;
    its fields are checked elsewhere (kubernetes-validate, or test_chart_render's schemas)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def _namespaces(case: dict[str, Any]) -> set[str]:
    """Namespaces the case's objects go to; they must exist, as on a real cluster."""
    values = case.get("values") or {}
    named = {case["namespace"]}
    named |= set((values.get("watch") or {}).get("namespaces") or [])
    named |= set((values.get("networkPolicy") or {}).get("namespaces") or [])
    # Value sets meant to be refused may name impossible namespaces; Helm refuses them first.
    return {n for n in named if isinstance(n, str) and DNS_LABEL.fullmatch(n)}


def _admin(kubeconfig: str) -> Any:
    """A :class:`localkube.Kube` from the admin kubeconfig a ControlPlane wrote."""
    import yaml
    from localkube import Kube

    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    return Kube(
        cluster["server"],
        Path(cluster["certificate-authority"]),
        cert=(Path(user["client-certificate"]), Path(user["client-key"])),
    )


def _ensure(api: Any, obj: dict[str, Any]) -> None:
    from localkube import KubeError

    try:
        api.create_object(obj)
    except KubeError as exc:
        if exc.status != 409:  # already there (an earlier case or test made it)
            raise


async def _child(request: dict[str, Any]) -> None:
    import helm_sdkpy

    chart, kubeconfig = request["chart"], request["kubeconfig"]
    api = _admin(kubeconfig)
    for group, kind, plural in STAND_INS:
        _ensure(api, _stand_in_crd(group, kind, plural))
    if request.get("lifecycle"):
        print(
            json.dumps(await _lifecycle(api, chart, kubeconfig, request["lifecycle"])), flush=True
        )
        return
    for case in request.get("uninstall") or []:
        config = helm_sdkpy.Configuration(namespace=case["namespace"], kubeconfig=kubeconfig)
        await helm_sdkpy.Uninstall(config).run(case["release"], wait=True, timeout=60)
    if request.get("lint"):
        config = helm_sdkpy.Configuration(kubeconfig=kubeconfig)
        print(json.dumps({"lint": await helm_sdkpy.Lint(config).run(chart)}), flush=True)
    for case in request["cases"]:
        for namespace in _namespaces(case):
            _ensure(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        config = helm_sdkpy.Configuration(namespace=case["namespace"], kubeconfig=kubeconfig)
        try:
            release = await helm_sdkpy.Install(config).run(
                case["release"],
                chart,
                values=case.get("values") or None,
                wait=False,
                timeout=60,
            )
        except helm_sdkpy.HelmError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
            continue
        if not case.get("keep"):
            # The next case installs the same release name: leave nothing behind.
            await helm_sdkpy.Uninstall(config).run(case["release"], wait=True, timeout=60)
        result = {
            "manifest": release.get("manifest", ""),
            "notes": (release.get("info") or {}).get("notes", ""),
        }
        print(json.dumps(result), flush=True)


def _rbac_names(api: Any) -> dict[str, list[str]]:
    """The release's ClusterRoles and Roles (the cluster's own bootstrap roles left out)."""
    rbac = ("rbac.authorization.k8s.io", "v1")
    helm = "app.kubernetes.io/managed-by=Helm"
    return {
        "clusterroles": sorted(
            o["metadata"]["name"] for o in api.objects(*rbac, "clusterroles", None, helm)
        ),
        "roles": sorted(
            f"{o['metadata']['namespace']}/{o['metadata']['name']}"
            for o in api.objects(*rbac, "roles", None, helm)
        ),
    }


async def _lifecycle(api: Any, chart: str, kubeconfig: str, plan: dict[str, Any]) -> dict[str, Any]:
    """install(values) -> upgrade(upgrade_values) -> uninstall, observing the API each time."""
    import helm_sdkpy

    seen: dict[str, Any] = {}
    for namespace in plan["namespaces"]:
        _ensure(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    config = helm_sdkpy.Configuration(namespace=plan["namespace"], kubeconfig=kubeconfig)
    release, deployment = plan["release"], ("apps", "v1", "deployments", plan["namespace"])
    steps = [
        (
            "install",
            lambda: helm_sdkpy.Install(config).run(
                release, chart, values=plan["values"], wait=False
            ),
        ),
        (
            "upgrade",
            lambda: helm_sdkpy.Upgrade(config).run(
                release, chart, values=plan["upgrade_values"], wait=False
            ),
        ),
        ("uninstall", lambda: helm_sdkpy.Uninstall(config).run(release, wait=True)),
    ]
    for step, action in steps:
        try:
            result = await action()
        except helm_sdkpy.HelmError as exc:
            seen[step] = {"error": str(exc)}
            break
        selector = f"app.kubernetes.io/instance={release}"
        deployments = api.objects(*deployment, selector)
        seen[step] = {
            "status": (result.get("info") or {}).get("status", "") if step != "uninstall" else "",
            "deployments": [o["metadata"]["name"] for o in deployments],
            "args": [o["spec"]["template"]["spec"]["containers"][0]["args"] for o in deployments],
            "crd": api.get_object(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                None,
                "workerpools.memkube.dev",
            )
            is not None,
            **_rbac_names(api),
        }
    return seen


if __name__ == "__main__":
    asyncio.run(_child(json.load(sys.stdin)))
