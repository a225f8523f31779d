"""Render and lint the chart with Helm's own Go library (helm-sdkpy), in a child process.

helm-sdkpy has no `helm template`: rendering is an `Install` with the in-memory release
driver against an API server, and the manifest comes back in the release. The API server is
kmock's Kubernetes emulator on 127.0.0.1, with two fixes (core discovery must say
`groupVersion: v1`, not `/v1`, or Helm cannot map any core kind; and it claims a
Kubernetes version the chart supports, 1.30 unless asked) and the Prometheus
Operator kinds registered so that ServiceMonitor/PodMonitor can be installed.

Why a child process: Helm reads `HELM_DRIVER` once, from the environment the process started
with (a Go shared library snapshots it at load), so setting `os.environ` in pytest is too late;
and the 120 MB Go library stays out of the test process.

Usage (what `render_cases` does for tests)::

    echo '{"chart": "...", "cases": [{"release": "r", "namespace": "ns", "values": {}}]}' \
        | HELM_DRIVER=memory python tests/chart/helmrender.py

prints one JSON result per case: {"manifest": str, "notes": str} or {"error": str}, and
{"lint": {...}} first when "lint": true is asked.

Not covered: what the rendered objects mean; the tests check that.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# Kinds a cluster with the Prometheus Operator serves; Helm maps kinds through discovery.
MONITORING = {
    "monitoring.coreos.com/v1/servicemonitors": {"kind": "ServiceMonitor", "namespaced": True},
    "monitoring.coreos.com/v1/podmonitors": {"kind": "PodMonitor", "namespaced": True},
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def render_cases(
    chart: Path, cases: list[dict[str, Any]], lint: bool = False
) -> list[dict[str, Any]]:
    """Run this module in a child with HELM_DRIVER=memory; one result per case (lint first)."""
    request = {"chart": str(chart), "cases": cases, "lint": lint}
    env = {**os.environ, "HELM_DRIVER": "memory", "KUBECONFIG": os.devnull}
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
        raise RuntimeError(f"helm renderer failed ({proc.returncode}):\n{proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _kubeconfig(url: str, directory: str) -> str:
    path = Path(directory) / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "double", "cluster": {"server": url}}],
                "users": [{"name": "helm", "user": {"token": "unused"}}],
                "contexts": [{"name": "double", "context": {"cluster": "double", "user": "helm"}}],
                "current-context": "double",
            }
        )
    )
    return str(path)


async def _child(request: dict[str, Any]) -> None:
    import helm_sdkpy
    import kmock

    class Emulator(kmock.KubernetesEmulator):
        async def _serve_server_version(self, req: Any) -> Any:
            payload = await super()._serve_server_version(req)
            minor = request.get("kube_minor", 30)
            payload.update(major="1", minor=str(minor), gitVersion=f"v1.{minor}.0")
            return payload

        async def _serve_version(self, req: Any) -> Any:
            payload = await super()._serve_version(req)
            payload["groupVersion"] = payload["groupVersion"].lstrip("/")
            return payload

    chart = request["chart"]
    with tempfile.TemporaryDirectory() as tmp:
        if request.get("lint"):
            async with Emulator() as api, kmock.Server(api) as server:
                config = helm_sdkpy.Configuration(kubeconfig=_kubeconfig(str(server.url), tmp))
                print(json.dumps({"lint": await helm_sdkpy.Lint(config).run(chart)}), flush=True)
        for case in request["cases"]:
            # A fresh API per case: an install leaves its objects behind.
            async with Emulator() as api, kmock.Server(api) as server:
                api.resources.load_bundled()
                for key, info in MONITORING.items():
                    api.resources[key] = {**info, "verbs": VERBS}
                config = helm_sdkpy.Configuration(
                    namespace=case["namespace"], kubeconfig=_kubeconfig(str(server.url), tmp)
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


if __name__ == "__main__":
    if os.environ.get("HELM_DRIVER") != "memory":
        sys.exit("run with HELM_DRIVER=memory (see the module docstring)")
    asyncio.run(_child(json.load(sys.stdin)))
