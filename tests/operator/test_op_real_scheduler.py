"""Scale-down through the real retirement protocol: a real `memkube scheduler` process and
real `memkube worker` processes named as the pods the operator created in the API double.

The double plays the API server and the kubelet (pods become ready when their worker
process has joined); the operator reaches the scheduler on 127.0.0.1 through its settings
hook. Asserted: the operator deletes exactly the pods whose workers the scheduler retired
(and whose processes exited), and every scattered value is still there afterwards.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apidouble import ApiDouble
from memkube.client import Client
from memkube_operator.builders import build_token_secret
from memkube_operator.spec import parse_pool
from opharness import (
    NS,
    free_port,
    operator_config,
    pool_status,
    running_operator,
    until,
    worker_pods,
)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "real-scheduler-test-token"
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    paths = [str(ROOT / "worker_image"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "MEMKUBE_TOKEN": TOKEN,
    }


async def _start(*args: str, banner: str) -> asyncio.subprocess.Process:
    """Start ``python -m memkube ARGS`` and wait for its banner line on stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memkube",
        *args,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"memkube {args[0]} exited before its banner")
            if banner in line:
                return process


@pytest.fixture
async def scheduler_port() -> AsyncIterator[int]:
    port = free_port()
    process = await _start(
        "scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
        banner="memkube scheduler at",
    )
    yield port
    if process.returncode is None:
        process.terminate()
    await process.wait()


async def test_scale_down_retires_real_workers_and_loses_no_data(
    api: ApiDouble, scheduler_port: int
) -> None:
    address = f"tcp://127.0.0.1:{scheduler_port}"
    body = api.create_object(
        {
            "apiVersion": "memkube.dev/v1alpha1",
            "kind": "WorkerPool",
            "metadata": {"name": "demo", "namespace": NS},
            "spec": {"replicas": 3, "worker": {"memoryLimit": "256Mi", "spill": {"size": "256Mi"}}},
        }
    )
    # The pool's Secret carries the token the scheduler process was started with.
    api.create_object(dict(build_token_secret(parse_pool(body), TOKEN)))
    workers: dict[str, asyncio.subprocess.Process] = {}
    config = operator_config(lambda *_: f"http://127.0.0.1:{scheduler_port}")
    try:
        async with running_operator(api, config):
            await until(api, lambda: len(worker_pods(api, "demo")) == 3)
            for pod in worker_pods(api, "demo"):
                name = pod["metadata"]["name"]
                workers[name] = await _start(
                    "worker",
                    address,
                    "--name",
                    name,
                    "--host",
                    "127.0.0.1",
                    "--memory-limit",
                    "256Mi",
                    "--log-level",
                    "WARNING",
                    banner="memkube worker",
                )
            api.mark_pods_ready(NS)

            client = await Client(address, token=TOKEN, asynchronous=True)
            try:
                await client.wait_for_workers(3)
                values = [bytes([i]) * 50_000 for i in range(30)]
                futures = await client.scatter(values)
                holders = await client.who_has(futures)
                assert len({w for ws in holders.values() for w in ws}) > 1  # spread out

                await _scale(api, 1)
                await until(api, lambda: len(_live(api)) == 1, timeout=60)
                (survivor,) = _live(api)
                gone = set(workers) - {survivor}
                # Exactly the retired workers' processes exited; their pods were deleted.
                for name in gone:
                    assert await asyncio.wait_for(workers[name].wait(), 30) is not None
                assert workers[survivor].returncode is None
                assert await client.gather(futures) == values
                events = (await _snapshot(scheduler_port))["events"]
                retired = {e["worker"] for e in events if e["kind"] == "worker-retired"}
                assert retired == gone
                assert [e for e in events if e["kind"] in ("worker-lost", "key-lost")] == []
                await until(api, lambda: pool_status(api, "demo").get("replicas") == 1)
            finally:
                await client.close()
    finally:
        for process in workers.values():
            if process.returncode is None:
                process.terminate()
            await process.wait()


def _live(api: ApiDouble) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in worker_pods(api, "demo")
        if not p["metadata"].get("deletionTimestamp")
    ]


async def _snapshot(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/api/v1/pool", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response,
    ):
        assert response.status == 200
        snapshot: dict[str, Any] = await response.json()
        return snapshot


async def _scale(api: ApiDouble, replicas: int) -> None:
    url = f"{api.url}/apis/memkube.dev/v1alpha1/namespaces/{NS}/workerpools/demo/scale"
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            url,
            json={"spec": {"replicas": replicas}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as r,
    ):
        assert r.status == 200
