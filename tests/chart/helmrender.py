"""Render and lint the chart with Helm's own Go library (helm-sdkpy), in a child process.

helm-sdkpy has no `helm template`: rendering is an `Install` with the in-memory release
driver against an API server, and the manifest comes back in the release. The API server is
the project's Kubernetes API double (tests/support/apidouble) on 127.0.0.1, so every object
is really created: CRDs from crds/ are registered, namespaced objects need their namespace.
Schemaless stand-in CRDs let the kinds the double lacks (ServiceMonitor, PodMonitor,
NetworkPolicy) be installed.

Why a child process: Helm reads `HELM_DRIVER` once, from the environment the process started
with (a Go shared library snapshots it at load), so setting `os.environ` in pytest is too late;
and the 120 MB Go library stays out of the test process.

Usage (what `render_cases` does for tests)::

    echo '{"chart": "...", "cases": [{"release": "r", "namespace": "ns", "values": {}}]}' \
        | HELM_DRIVER=memory python tests/chart/helmrender.py

prints one JSON result per case: {"manifest": str, "notes": str} or {"error": str}, and
{"lint": {...}} first when "lint": true is asked. `lifecycle` instead installs, upgrades and
uninstalls one release and reports what the API held after each step.

Not covered: what the rendered objects mean; the tests check that.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Kinds the chart may render that the double may not serve: the Prometheus Operator's, and
# NetworkPolicy (not among the double's built-ins yet).
STAND_INS = [
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ("monitoring.coreos.com", "PodMonitor", "podmonitors"),
    ("networking.k8s.io", "NetworkPolicy", "networkpolicies"),
]
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def run_child(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Run this module in a child with HELM_DRIVER=memory; its JSON lines, parsed."""
    support = str(HERE.parents[1] / "tests" / "support")
    path = os.pathsep.join(p for p in (support, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HELM_DRIVER": "memory", "KUBECONFIG": os.devnull, "PYTHONPATH": path}
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


def lifecycle(chart: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Install, upgrade and uninstall one release (see _lifecycle); what was seen after each."""
    (seen,) = run_child({"chart": str(chart), "lifecycle": plan, "cases": []})
    return seen


def render_cases(
    chart: Path, cases: list[dict[str, Any]], lint: bool = False
) -> list[dict[str, Any]]:
    """Render every case (and lint first if asked); one result per case."""
    return run_child({"chart": str(chart), "cases": cases, "lint": lint})


def _stand_in_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """A kind the double does not serve, as a schemaless CRD: Helm can map and create it;
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


async def _child(request: dict[str, Any]) -> None:
    import helm_sdkpy
    from apidouble import ApiDouble

    chart = request["chart"]
    if request.get("lifecycle"):
        print(json.dumps(await _lifecycle(chart, request["lifecycle"])), flush=True)
        return
    if request.get("lint"):
        async with ApiDouble() as api:
            config = helm_sdkpy.Configuration(kubeconfig=str(api.kubeconfig_path))
            print(json.dumps({"lint": await helm_sdkpy.Lint(config).run(chart)}), flush=True)
    for case in request["cases"]:
        # A fresh API per case: an install leaves its objects behind.
        async with ApiDouble() as api:
            served = {(rt.group, rt.plural) for rt in api.registry.types()}
            for group, kind, plural in STAND_INS:
                if (group, plural) not in served:
                    api.create_object(_stand_in_crd(group, kind, plural))
            for namespace in _namespaces(case):
                api.create_object(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                )
            config = helm_sdkpy.Configuration(
                namespace=case["namespace"], kubeconfig=str(api.kubeconfig_path)
            )
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
            result = {
                "manifest": release.get("manifest", ""),
                "notes": (release.get("info") or {}).get("notes", ""),
            }
            print(json.dumps(result), flush=True)


def _rbac_names(api: Any) -> dict[str, list[str]]:
    rbac = ("rbac.authorization.k8s.io", "v1")
    return {
        "clusterroles": sorted(o["metadata"]["name"] for o in api.objects(*rbac, "clusterroles")),
        "roles": sorted(
            f"{o['metadata']['namespace']}/{o['metadata']['name']}"
            for o in api.objects(*rbac, "roles")
        ),
    }


async def _lifecycle(chart: str, plan: dict[str, Any]) -> dict[str, Any]:
    """install(values) -> upgrade(upgrade_values) -> uninstall, observing the API each time."""
    import helm_sdkpy
    from apidouble import ApiDouble

    seen: dict[str, Any] = {}
    async with ApiDouble() as api:
        for namespace in plan["namespaces"]:
            api.create_object(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        config = helm_sdkpy.Configuration(
            namespace=plan["namespace"], kubeconfig=str(api.kubeconfig_path)
        )
        release, deployment = plan["release"], ("apps", "v1", "deployments", plan["namespace"])
        steps = [
            (
                "install",
                helm_sdkpy.Install(config).run(release, chart, values=plan["values"], wait=False),
            ),
            (
                "upgrade",
                helm_sdkpy.Upgrade(config).run(
                    release, chart, values=plan["upgrade_values"], wait=False
                ),
            ),
            ("uninstall", helm_sdkpy.Uninstall(config).run(release, wait=False)),
        ]
        for step, action in steps:
            try:
                result = await action
            except helm_sdkpy.HelmError as exc:
                seen[step] = {"error": str(exc)}
                break
            seen[step] = {
                "status": (result.get("info") or {}).get("status", "")
                if step != "uninstall"
                else "",
                "deployments": [o["metadata"]["name"] for o in api.objects(*deployment)],
                "args": [
                    o["spec"]["template"]["spec"]["containers"][0]["args"]
                    for o in api.objects(*deployment)
                ],
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
    if os.environ.get("HELM_DRIVER") != "memory":
        sys.exit("run with HELM_DRIVER=memory (see the module docstring)")
    asyncio.run(_child(json.load(sys.stdin)))
