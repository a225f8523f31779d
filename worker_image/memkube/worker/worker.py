"""The worker: runs tasks in threads, holds their results, serves them to peers.

One aiohttp server (``/health``, ``/ready``, ``/data``, ``/metrics``) and one websocket to
the scheduler. Everything the worker holds lives in ``WorkerMemory.data``, the memory
manager's spill-to-disk mapping; every access that may touch the disk (store, load, free,
serialize for a peer) runs in a thread, never on the event loop.

Life of a task here: ``compute-task`` arrives -> missing dependencies are fetched from peers
(unless paused) -> ready queue by priority -> a thread runs it and stores the result ->
``task-finished`` (batched) to the scheduler. A memory *terminate* makes the worker tell
the scheduler why and exit with :data:`EXIT_MEMORY_RESTART` for its supervisor (the local
pool, or Kubernetes) to restart it.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import os
import pickle
import socket
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
import cloudpickle
from aiohttp import web

from ..addresses import Address, parse_address
from ..errors import CommError, TaskError
from ..memory import MemoryConfig, WorkerMemory, sizeof
from ..protocol import MAX_FRAME, BatchedSend, Message, ops_allowed, receive_ops
from ..security import Auth, TLSConfig
from ..serving import peer_session, start_server
from ..taskspec import execute
from .routes import data_routes
from .transfer import fetch_from_peer

log = logging.getLogger(__name__)

EXIT_MEMORY_RESTART = 75
SCHEDULER_OPS = ops_allowed(
    "welcome", "compute-task", "free-keys", "acquire-replicas", "cancel-compute", "close-worker",
)


@dataclass(eq=False)
class WorkerTask:
    key: str
    run_spec: bytes
    who_has: dict[str, list[str]]
    priority: tuple[Any, ...]
    nbytes: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False


class Worker:
    """A memkube worker in the current event loop: ``await Worker(...).start()``."""

    def __init__(
        self,
        scheduler_address: str,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        contact_address: str | None = None,
        nthreads: int = 1,
        memory: MemoryConfig | None = None,
        auth: Auth | None = None,
        tls: TLSConfig | None = None,
        heartbeat_interval: float = 1.0,
        death_timeout: float = 60.0,
        node: str | None = None,
    ) -> None:
        self.scheduler = parse_address(scheduler_address)
        self.name = name or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        self.node = node if node is not None else os.environ.get("NODE_NAME", "")
        self.host, self.port = host, port
        self._contact = contact_address
        self.nthreads = max(1, nthreads)
        self.auth = (auth or Auth(None)).require("worker")  # no token: refuse to start
        self.tls = tls or TLSConfig()
        self.heartbeat_interval = heartbeat_interval
        self.death_timeout = death_timeout
        self.memory = WorkerMemory(memory or MemoryConfig.from_options(limit=None))
        self.executor = ThreadPoolExecutor(self.nthreads, thread_name_prefix="memkube-task")
        self.io_executor = ThreadPoolExecutor(2, thread_name_prefix="memkube-io")
        self.address = ""
        self.tasks: dict[str, WorkerTask] = {}
        self._ready: list[tuple[tuple[Any, ...], int, WorkerTask]] = []
        self._seq = itertools.count()
        self._executing = 0
        self._inflight: dict[str, asyncio.Future[bool]] = {}
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._comm: BatchedSend | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._background: list[asyncio.Task[Any]] = []
        self._closing = False
        self.finished = asyncio.Event()
        self.exit_code = 0
        self.app = self._make_app()

    # ------------------------------------------------------------------ lifecycle

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth.middleware()], client_max_size=MAX_FRAME)
        app.add_routes([web.get("/health", self._health), web.get("/ready", self._ready_probe),
                        web.get("/metrics", self._metrics)])
        app.add_routes(data_routes(self))
        return app

    async def start(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._session = peer_session(self.auth, self.tls)
        self._runner, self.port = await start_server(self.app, self.host, self.port, self.tls)
        scheme = "tls" if self.tls.enabled else "tcp"
        if self._contact:
            self.address = self._contact
        else:
            contact_host = self.host
            if contact_host in ("0.0.0.0", "::", ""):
                contact_host = os.environ.get("POD_IP") or socket.gethostbyname(
                    socket.gethostname())
            self.address = str(Address(scheme, contact_host, self.port))
        await self.memory.start(on_pause=self._on_pause, on_resume=self._on_resume,
                                on_terminate=self._on_terminate)
        await self._connect()
        self._background.append(asyncio.create_task(self._heartbeats()))
        log.info("worker %s at %s, scheduler %s", self.name, self.address, self.scheduler)
        return self

    async def close(self, exit_code: int = 0) -> None:
        if self._closing:
            return
        self._closing = True
        self.exit_code = exit_code
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._comm is not None:
            await self._comm.close()
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        await self.memory.close()
        self.io_executor.shutdown(wait=True)
        self.finished.set()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ scheduler link

    async def _connect(self) -> None:
        assert self._session is not None
        url = self.scheduler.ws + "/ws/worker"
        deadline = time.monotonic() + self.death_timeout
        delay = 0.1
        while True:
            try:
                self._ws = await self._session.ws_connect(url, max_msg_size=MAX_FRAME)
                break
            except (aiohttp.ClientError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise CommError(f"cannot reach scheduler {self.scheduler}: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        ws = self._ws
        self._comm = BatchedSend(ws.send_bytes)
        self._comm.start()
        # On a reconnect the scheduler learns what survived here; sizes follow in add-keys.
        keys = dict.fromkeys(list(self.memory.data.keys()), 0)
        self._comm.send({
            "op": "register-worker", "address": self.address, "name": self.name,
            "nthreads": self.nthreads, "host": parse_address(self.address).host,
            "node": self.node, "pid": os.getpid(), "keys": keys,
            "memory": self.figures(),
        })
        self._background.append(asyncio.create_task(self._listen(ws)))

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for ops in receive_ops(ws, SCHEDULER_OPS, "the scheduler"):
                for msg in ops:
                    self._handle(msg)
        finally:
            if not self._closing:
                asyncio.get_running_loop().create_task(self._scheduler_lost())

    async def _scheduler_lost(self) -> None:
        """Reconnect within ``death_timeout``, or exit: a worker never outlives its pool."""
        log.warning("lost the scheduler at %s; reconnecting", self.scheduler)
        if self._comm is not None:
            await self._comm.close()
        for wt in list(self.tasks.values()):
            wt.cancelled = True
        self.tasks.clear()
        self._ready.clear()
        try:
            await self._connect()
        except CommError as exc:
            log.error("%s; exiting", exc)
            await self.close(exit_code=1)

    def _send(self, msg: Message) -> None:
        if self._comm is not None:
            self._comm.send(msg)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self._send({"op": "heartbeat-worker", "memory": self.figures(),
                        "executing": self._executing, "ready": len(self._ready)})

    def figures(self) -> dict[str, Any]:
        """Memory figures for the scheduler, with the spill cap (retirement plans by it)."""
        return {**self.memory.figures(), "max_spill": self.memory.config.max_spill}

    # ------------------------------------------------------------------ messages

    def _handle(self, msg: Message) -> None:
        op = msg["op"]
        if op == "compute-task":
            wt = WorkerTask(msg["key"], bytes(msg["run_spec"]),
                            {str(k): list(v) for k, v in msg["who_has"].items()},
                            tuple(msg["priority"]), dict(msg.get("nbytes") or {}))
            self.tasks[wt.key] = wt
            missing = [k for k in wt.who_has if k not in self.memory.data]
            if missing:
                asyncio.get_running_loop().create_task(self._fetch_then_queue(wt, missing))
            else:
                self._queue(wt)
        elif op == "free-keys":
            keys = [str(k) for k in msg["keys"]]
            for key in keys:
                if key in self.tasks:
                    self.tasks.pop(key).cancelled = True
            asyncio.get_running_loop().run_in_executor(self.io_executor, self._free, keys)
        elif op == "cancel-compute":
            if msg["key"] in self.tasks:
                self.tasks.pop(msg["key"]).cancelled = True
        elif op == "acquire-replicas":
            who_has = {str(k): list(v) for k, v in msg["who_has"].items()}
            asyncio.get_running_loop().create_task(self._acquire(who_has))
        elif op == "close-worker":
            log.info("scheduler asked this worker to close: %s", msg["reason"])
            asyncio.get_running_loop().create_task(self.close())

    def report_lost(self, keys: list[str]) -> None:
        """Tell the scheduler these keys are gone here (e.g. a corrupt spill file).

        Thread-safe: called from I/O threads too.
        """
        loop = self._loop
        loop.call_soon_threadsafe(self._send, {"op": "lost-keys", "keys": list(keys)})

    def forget(self, key: str) -> None:
        self._free([key])

    def _free(self, keys: list[str]) -> None:
        # Values in memory first: their memory comes back at once, while unlinking a large
        # spill file takes milliseconds each.
        data = self.memory.data
        keys = sorted(keys, key=lambda k: not data.in_memory(k))
        for key in keys:
            try:  # not .pop(): that would read a spilled value back just to drop it
                del self.memory.data[key]
            except KeyError:
                pass  # freed twice (released and cancelled), or never stored

    # ------------------------------------------------------------------ dependencies

    async def _fetch_then_queue(self, wt: WorkerTask, missing: list[str]) -> None:
        ok = await self._gather_deps({k: wt.who_has[k] for k in missing}, for_task=wt)
        if ok and not wt.cancelled:
            self._queue(wt)

    async def _gather_deps(self, who_has: dict[str, list[str]], *,
                           for_task: WorkerTask | None = None) -> bool:
        """Fetch keys from peers (deduplicated across tasks); False if any could not be had."""
        await self._resumed.wait()  # paused: accept no incoming transfer
        waits = []
        todo: dict[str, list[str]] = {}
        for key, holders in who_has.items():
            if key in self._inflight:
                waits.append(self._inflight[key])
            elif key not in self.memory.data:
                todo[key] = holders
                self._inflight[key] = asyncio.get_running_loop().create_future()
        fetched = await self._fetch_keys(todo)
        for key in todo:
            fut = self._inflight.pop(key)
            fut.set_result(key in fetched)
        if fetched:
            self._send({"op": "add-keys", "keys": fetched})
        results = [all(k in fetched for k in todo)]
        results += [await w for w in waits]
        if not all(results):
            failed = [k for k in who_has if k not in self.memory.data]
            if for_task is not None and failed and not for_task.cancelled:
                self.tasks.pop(for_task.key, None)
                self._send({"op": "missing-data", "key": for_task.key, "dep": failed[0],
                            "worker": ",".join(who_has[failed[0]])})
            return False
        return True

    async def _fetch_keys(self, who_has: dict[str, list[str]]) -> dict[str, int]:
        """Fetch from holders, one batch per peer, falling back to other holders."""
        assert self._session is not None
        remaining = dict(who_has)
        tried: dict[str, set[str]] = {k: set() for k in who_has}
        stored: dict[str, int] = {}
        loop = asyncio.get_running_loop()
        while remaining:
            plan: dict[str, list[str]] = {}
            for key, holders in list(remaining.items()):
                options = [h for h in holders if h not in tried[key] and h != self.address]
                if not options:
                    del remaining[key]
                    continue
                plan.setdefault(options[0], []).append(key)
                tried[key].add(options[0])
            if not plan:
                break
            results = await asyncio.gather(*(
                fetch_from_peer(self._session, peer, keys) for peer, keys in plan.items()))
            for items, _failed in results:
                if items:
                    sizes = await loop.run_in_executor(self.io_executor, self._store_frames,
                                                       items)
                    stored.update(sizes)
                    for key in sizes:
                        remaining.pop(key, None)
        return stored

    def _store_frames(self, items: dict[str, list[memoryview]]) -> dict[str, int]:
        from ..serialize import loads

        sizes = {}
        for key, frames in items.items():
            value = loads(frames)
            self.memory.data[key] = value
            sizes[key] = sizeof(value)
        return sizes

    async def _acquire(self, who_has: dict[str, list[str]]) -> None:
        """Copy keys from peers for replication or retirement; report what failed."""
        await self._resumed.wait()
        todo = {k: v for k, v in who_has.items() if k not in self.memory.data}
        fetched = await self._fetch_keys(todo) if todo else {}
        held = {k: 0 for k in who_has if k in self.memory.data and k not in fetched}
        if fetched or held:
            self._send({"op": "add-keys", "keys": {**held, **fetched}})
        lost = [k for k in who_has if k not in fetched and k not in held]
        if lost:
            self._send({"op": "lost-keys", "keys": lost})

    # ------------------------------------------------------------------ execution

    def _queue(self, wt: WorkerTask) -> None:
        heapq.heappush(self._ready, (wt.priority, next(self._seq), wt))
        self._start_ready()

    def _start_ready(self) -> None:
        loop = asyncio.get_running_loop()
        while self._ready and self._executing < self.nthreads and self._resumed.is_set():
            _, _, wt = heapq.heappop(self._ready)
            if wt.cancelled:
                continue
            inputs = sum(wt.nbytes.values())
            if self._executing and not self.memory.can_fit(inputs):
                heapq.heappush(self._ready, (wt.priority, next(self._seq), wt))
                break  # wait for a running task to finish before starting a big one
            self._executing += 1
            fut = loop.run_in_executor(self.executor, self._run, wt)
            fut.add_done_callback(functools.partial(self._task_done, wt))

    def _run(self, wt: WorkerTask) -> Message:
        """In a task thread: load inputs, run, store the result. Returns the report."""
        start = time.perf_counter()
        try:
            values = {k: self.memory.data[k] for k in wt.who_has}
        except KeyError as exc:  # an input vanished here (e.g. its spill file was corrupt)
            return {"op": "missing-data", "key": wt.key, "dep": str(exc.args[0]),
                    "worker": self.address}
        try:
            result = execute(wt.run_spec, values)
        except BaseException as exc:  # noqa: BLE001 - any task failure goes to its future
            return _error_report(wt.key, exc)
        duration = time.perf_counter() - start
        if wt.cancelled:
            return {"op": "cancelled"}
        self.memory.data[wt.key] = result
        return {"op": "task-finished", "key": wt.key, "nbytes": sizeof(result),
                "type": type(result).__qualname__, "duration": duration}

    def _task_done(self, wt: WorkerTask, fut: asyncio.Future[Message]) -> None:
        self._executing -= 1
        if fut.cancelled():
            return
        report = fut.result()
        if self.tasks.get(wt.key) is wt:
            del self.tasks[wt.key]
            if report["op"] != "cancelled":
                self._send(report)
        elif report["op"] == "task-finished" and not self._closing:
            # Cancelled while running: the result is not wanted.
            self.io_executor.submit(self._free, [wt.key])
        if self._closing:
            return
        limit = self.memory.config.limit
        if limit and report.get("nbytes", 0) * 100 > limit:
            # A large result: let the memory manager act on it (spill, pause) before the
            # next task allocates on top, instead of at its next reading.
            self._loop.create_task(self._settle_memory_then_start())
        else:
            self._start_ready()

    async def _settle_memory_then_start(self) -> None:
        await self.memory.check_now()
        self._start_ready()

    # ------------------------------------------------------------------ memory callbacks

    async def _on_pause(self, reason: str = "") -> None:
        if not self._resumed.is_set():
            return  # already paused: nothing new to tell
        log.info("paused: %s", reason)  # the memory manager warns, rate-limited
        self._resumed.clear()
        self._send({"op": "worker-status", "status": "paused", "reason": reason})

    async def _on_resume(self, reason: str = "") -> None:
        if self._resumed.is_set():
            return
        log.info("resumed: %s", reason)
        self._resumed.set()
        self._send({"op": "worker-status", "status": "running", "reason": reason})
        self._start_ready()

    async def _on_terminate(self, reason: str) -> None:
        log.error("memory restart: %s", reason)
        self._send({"op": "memory-restart", "reason": reason})
        if self._comm is not None:
            await self._comm.flush()
        # Close from a task of its own: this callback runs inside the memory monitor,
        # which close() stops and awaits.
        self._loop.create_task(self.close(exit_code=EXIT_MEMORY_RESTART))

    # ------------------------------------------------------------------ probes

    async def _metrics(self, request: web.Request) -> web.Response:
        from ..dashboard.metrics import metrics_response, render_worker_metrics

        extra = {"nthreads": self.nthreads, "keys": len(self.memory.data),
                 "tasks": {"executing": self._executing, "ready": len(self._ready)},
                 "status": "paused" if self.memory.paused else "running"}
        return metrics_response(render_worker_metrics(self.name, self.memory.figures(), extra))

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ready_probe(self, request: web.Request) -> web.Response:
        if self._ws is None or self._ws.closed:
            return web.Response(status=503, text="not connected to the scheduler")
        return web.Response(text="ok")


def _error_report(key: str, exc: BaseException) -> Message:
    tb = "".join(traceback.format_exception(exc))
    text = f"{type(exc).__name__}: {exc}"
    try:
        blob = cloudpickle.dumps(exc)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - the exception itself may not pickle
        blob = cloudpickle.dumps(TaskError(text, tb))
    return {"op": "task-erred", "key": key, "exception": blob, "traceback": tb, "text": text}
