"""`memkube operator run` as a user runs it: a process, kubeconfig credentials, liveness.

The operator process logs in through the kubeconfig (kopf's ``login_via_client``), as it
would from a workstation; the double's request log then shows which permissions it used,
checked against the chart's RBAC rules.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from apidouble import ApiDouble
from opharness import GROUP, NS, VERSION, free_port, until, worker_pods

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


async def test_memkube_operator_run_reconciles_and_serves_liveness(api: ApiDouble) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(api.kubeconfig_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "worker_image"), str(ROOT / "operator")]),
        "MEMKUBE_DEFAULT_IMAGE": "registry.example/memkube:test",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memkube",
        "operator",
        "run",
        f"--namespace={NS}",
        f"--liveness=http://127.0.0.1:{port}/healthz",
        "--scheduler-url=http://127.0.0.1:9/{namespace}/{service}",  # loopback, never DNS
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        api.create_object(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "WorkerPool",
                "metadata": {"name": "demo", "namespace": NS},
                "spec": {"replicas": 2},
            }
        )
        await until(api, lambda: len(worker_pods(api, "demo")) == 2, timeout=30)
        images = {c["image"] for p in worker_pods(api, "demo") for c in p["spec"]["containers"]}
        assert images == {"registry.example/memkube:test"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()[-2000:]
    # kopf also lists/watches namespaces and CRDs when allowed, and falls back to the given
    # namespaces and its own resource list on 403: optional permissions, not in the chart.
    optional = {"namespaces", "customresourcedefinitions"}
    used = {(g, r, v) for g, r, v in api.requests.permissions() if r not in optional}
    assert used <= _chart_permissions(), used - _chart_permissions()


def _chart_permissions() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) granted by the chart's operator RBAC rules."""
    text = (ROOT / "charts" / "memkube" / "templates" / "_rbac_rules.tpl").read_text()
    body = text.split('define "memkube.operatorRules" -}}', 1)[1].split("{{- end }}", 1)[0]
    granted = set()
    for rule in yaml.safe_load(body):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted |= {(group, resource, verb) for verb in rule["verbs"]}
    return granted
