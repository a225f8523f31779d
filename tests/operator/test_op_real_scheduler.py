"""Scale-down and rolling updates through the real retirement protocol: a real
`memkube scheduler` process and real `memkube worker` processes named as the pods.

The real API server (no nodes) holds the pods; :class:`ProcessKubelet` plays the kubelet:
for every worker pod the operator creates it starts a `memkube worker --name <pod>` process
and writes the pod's status Ready through the status subresource once it has joined, and it stops the process of a deleted pod
(recording whether the process had already exited by itself, as a retired worker does).
The operator reaches the scheduler on 127.0.0.1 through its settings hook.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest
from memkube.client import Client
from memkube_operator.builders import build_token_secret
from memkube_operator.spec import parse_pool
from opharness import (
    GROUP,
    PLURAL,
    VERSION,
    ClusterApi,
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


class ProcessKubelet:
    """Runs one real worker process per live worker pod of ``demo``."""

    def __init__(self, api: ClusterApi, address: str) -> None:
        self.api, self.address = api, address
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.exited_before_deletion: set[str] = set()
        self.killed: set[str] = set()
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None

    def _on_change(self) -> None:
        if self._stop_watch.is_set():
            return
        try:
            self._loop.call_soon_threadsafe(self._changed.set)
        except RuntimeError:
            pass  # the event arrived as the test's loop closed: nobody waits for it

    async def __aenter__(self) -> Self:
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(
            target=self.api.watch,
            args=(("", "v1", "pods"), self.api.ns, self._on_change, self._stop_watch),
            daemon=True,
        )
        self._watcher.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop_watch.set()
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for process in self.processes.values():
            if process.returncode is None:
                process.terminate()
            await process.wait()

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            live = {
                p["metadata"]["name"]
                for p in worker_pods(self.api, "demo")
                if not p["metadata"].get("deletionTimestamp")
            }
            started = False
            for name in sorted(live - set(self.processes)):
                self.processes[name] = await _start(
                    "worker",
                    self.address,
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
                started = True
            for name in set(self.processes) - live - self.killed:
                await self._stop(name)
            if started:
                await asyncio.to_thread(self.api.mark_pods_ready, self.api.ns)
            await self._changed.wait()

    async def _stop(self, name: str) -> None:
        process = self.processes[name]
        try:
            await asyncio.wait_for(process.wait(), 10)
            self.exited_before_deletion.add(name)
        except TimeoutError:
            process.kill()
            await process.wait()
        self.killed.add(name)


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


@pytest.fixture
async def pool(api: ClusterApi, scheduler_port: int) -> AsyncIterator[ProcessKubelet]:
    """Pool ``demo`` of 3 real workers, reconciled by the operator, all ready."""
    body = api.create_object(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WorkerPool",
            "metadata": {"name": "demo"},
            "spec": {"replicas": 3, "worker": {"memoryLimit": "256Mi", "spill": {"size": "256Mi"}}},
        }
    )
    # The pool's Secret carries the token the scheduler process was started with.
    api.create_object(dict(build_token_secret(parse_pool(body), TOKEN)))
    config = operator_config(lambda *_: f"http://127.0.0.1:{scheduler_port}")
    async with (
        running_operator(api, config),
        ProcessKubelet(api, f"tcp://127.0.0.1:{scheduler_port}") as kubelet,
    ):
        await until(api, lambda: pool_status(api, "demo").get("readyReplicas") == 3, timeout=60)
        yield kubelet


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


def _live(api: ClusterApi) -> set[str]:
    return {
        p["metadata"]["name"]
        for p in worker_pods(api, "demo")
        if not p["metadata"].get("deletionTimestamp")
    }


async def _scatter(port: int) -> tuple[Client, list[Any], list[bytes]]:
    client = await Client(f"tcp://127.0.0.1:{port}", token=TOKEN, asynchronous=True)
    await client.wait_for_workers(3)
    values = [bytes([i]) * 50_000 for i in range(30)]
    futures = await client.scatter(values)
    holders = await client.who_has(futures)
    assert len({w for ws in holders.values() for w in ws}) > 1  # spread over workers
    return client, futures, values


async def _assert_only_retirements(port: int, retired: set[str]) -> None:
    events = (await _snapshot(port))["events"]
    assert {e["worker"] for e in events if e["kind"] == "worker-retired"} == retired
    assert [e for e in events if e["kind"] in ("worker-lost", "key-lost")] == []


async def test_scale_down_deletes_exactly_the_retired_pods_and_loses_no_data(
    api: ClusterApi, scheduler_port: int, pool: ProcessKubelet
) -> None:
    before = _live(api)
    client, futures, values = await _scatter(scheduler_port)
    try:
        api.patch_object(GROUP, VERSION, PLURAL, api.ns, "demo", {"spec": {"replicas": 1}})
        await until(api, lambda: len(_live(api)) == 1, timeout=60)
        gone = before - _live(api)
        await until(api, lambda: pool.killed >= gone, timeout=30)
        # The deleted pods are exactly those whose workers retired and exited by themselves.
        assert pool.exited_before_deletion == gone
        (survivor,) = _live(api)
        assert pool.processes[survivor].returncode is None
        assert await client.gather(futures) == values
        await _assert_only_retirements(scheduler_port, gone)
        await until(api, lambda: pool_status(api, "demo").get("replicas") == 1)
    finally:
        await client.close()


async def test_rolling_update_moves_data_off_each_old_worker(
    api: ClusterApi, scheduler_port: int, pool: ProcessKubelet
) -> None:
    old = _live(api)
    client, futures, values = await _scatter(scheduler_port)
    try:
        api.patch_object(
            GROUP, VERSION, PLURAL, api.ns, "demo", {"spec": {"worker": {"memoryLimit": "300Mi"}}}
        )
        await until(api, lambda: not (_live(api) & old) and len(_live(api)) == 3, timeout=120)
        await until(api, lambda: pool.killed >= old, timeout=30)
        assert pool.exited_before_deletion == old
        assert len(pool.processes) == 6  # one new worker per old one, never more
        assert await client.gather(futures) == values
        await _assert_only_retirements(scheduler_port, old)
        await until(api, lambda: pool_status(api, "demo").get("updatedReplicas") == 3)
    finally:
        await client.close()
