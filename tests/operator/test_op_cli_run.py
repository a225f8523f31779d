"""`memkube operator run` as a user runs it: a process, kubeconfig credentials, liveness.

The operator process logs in through the admin kubeconfig of the session's real control
plane (kopf's ``login_via_client``), as it would from a workstation. Which permissions it
needs is checked by the real authorizer in tests/chart/test_rbac.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from opharness import GROUP, VERSION, ClusterApi, free_port, until, worker_pods

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


async def test_memkube_operator_run_reconciles_and_serves_liveness(api: ClusterApi) -> None:
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
        f"--namespace={api.ns}",
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
                "metadata": {"name": "demo"},
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
