"""An in-process memkube pool for tests: scheduler and workers in the caller's event loop.

Used by the ``pool`` fixtures of the cluster and lifetime tiers; real HTTP and websockets on
loopback, real spill directories, one asynchronous client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memkube import Client
from memkube.client.direct import Routes
from memkube.memory import MemoryConfig
from memkube.scheduler import Scheduler
from memkube.security import Auth, new_token
from memkube.worker import Worker


@dataclass
class Pool:
    scheduler: Scheduler
    workers: list[Worker]
    client: Client
    token: str
    spill_root: Path

    async def add_worker(self, name: str, **options: Any) -> Worker:
        memory = MemoryConfig.from_options(limit=options.pop("memory_limit", "1GiB"),
                                           spill_dir=str(self.spill_root / name), env={})
        worker = Worker(self.scheduler.address, name=name, memory=memory,
                        auth=Auth(self.token), **options)
        await worker.start()
        self.workers.append(worker)
        await self.scheduler.wait_for_workers(len(self.scheduler.state.workers) + 1)
        return worker


@contextlib.asynccontextmanager
async def inprocess_pool(spill_root: Path, *, workers: int = 2, threads: int = 1,
                         memory_limit: str = "1GiB", replication_factor: int = 1,
                         client_grace: float = 10.0, worker_saturation: float = 1.1,
                         nodes: dict[int, str] | None = None,
                         metrics_token: str | None = None) -> AsyncIterator[Pool]:
    token = new_token()
    auth = Auth(token, metrics_token)
    scheduler = Scheduler(host="127.0.0.1", port=0, auth=auth,
                          replication_factor=replication_factor, client_grace=client_grace,
                          worker_saturation=worker_saturation)
    await scheduler.start()
    started: list[Worker] = []
    client: Client | None = None
    try:
        for i in range(workers):
            memory = MemoryConfig.from_options(limit=memory_limit,
                                               spill_dir=str(spill_root / f"spill-{i}"), env={})
            worker = Worker(scheduler.address, name=f"w{i}", nthreads=threads, memory=memory,
                            auth=auth, node=(nodes or {}).get(i, ""))
            started.append(await worker.start())
        await scheduler.wait_for_workers(workers, timeout=30)
        client = await Client(scheduler.address, token=token, asynchronous=True)
        yield Pool(scheduler, started, client, token, spill_root)
    finally:
        if client is not None:
            await client.close()
        for worker in started:
            await worker.close()
        await scheduler.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_routes(pool: Pool, which: str) -> Routes:
    """Client routes on which ``which`` ("all", or "one": the first) of the pool's workers
    cannot be reached, as behind a port-forward to the scheduler alone."""
    bogus = f"tcp://127.0.0.1:{closed_port()}"
    first = pool.workers[0].address
    return Routes(connect_timeout=0.5, resolve=lambda address: (
        bogus if which == "all" or address == first else address))


@contextlib.asynccontextmanager
async def silent_worker() -> AsyncIterator[str]:
    """The address of an HTTP server that passes the health probe and then never answers a
    data request: a worker whose pod vanished after the client (or a peer) probed it."""
    from aiohttp import web

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/data", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
