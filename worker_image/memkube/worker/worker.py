"""The worker: runs tasks in threads, holds their results, serves them to peers.

One aiohttp server (``/health``, ``/ready``, ``/data``, ``/metrics``) and one websocket to
the scheduler. Everything the worker holds lives in ``WorkerMemory.data``, the memory
manager's spill-to-disk mapping; every access that may touch the disk (store, load, free,
serialize for a peer) runs in a thread, never on the event loop.

This module is the shell: every decision (which task starts when, what to fetch, what a
failure means) is made by the pure :class:`~.state.WorkerState`; here its instructions are
carried out (threads, HTTP, the websocket) and what happens is fed back to it. A memory
*terminate* makes the worker tell the scheduler why and which tasks ran, and exit at once
with :data:`EXIT_MEMORY_RESTART` for its supervisor (:mod:`memkube.guard`, the container's
entrypoint) to restart it. The supervisor watches from outside this interpreter and talks
to it over :mod:`.guardlink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pickle
import socket
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import aiohttp
import cloudpickle
from aiohttp import web

from .. import serialize
from ..addresses import Address, parse_address
from ..bulk import BulkClient
from ..errors import CommError, TaskError
from ..memory import MemoryConfig, WorkerMemory, sizeof
from ..protocol import (
    INLINE_LIMIT,
    MAX_FRAME,
    BatchedSend,
    Message,
    ops_allowed,
    receive_ops,
)
from ..security import Auth, TLSConfig
from ..serving import peer_session, start_server
from ..taskspec import execute
from .admission import Room
from .guardlink import GuardLink, take_kill_report
from .peak import PeakMeter
from .prefetch import Prefetcher
from .routes import data_routes
from .scatter import ScatterInbox, scatter_routes
from .state import (
    Execute,
    Fetch,
    Free,
    Instruction,
    Restart,
    Send,
    SpillFirst,
    WorkerState,
    WorkerTask,
)
from .transfer import Transfers

log = logging.getLogger(__name__)

EXIT_MEMORY_RESTART = 75
SCHEDULER_OPS = ops_allowed(
    "welcome", "compute-task", "free-keys", "acquire-replicas", "cancel-compute", "close-worker",
    "expect-data",
)


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
        self.prefetcher = Prefetcher(self.memory, self.io_executor)
        self.transfers = Transfers(
            self.memory, self.io_executor, paused=lambda: self.state.paused,
            report=lambda sizes: self._do(self.state.fetch_done(sizes)))
        self.address = ""
        self.state = WorkerState(self.nthreads, holds=self.memory.data.__contains__,
                                 room=self._room)
        self.peaks = PeakMeter()
        self.scatter_inbox = ScatterInbox()  # direct scatters the scheduler granted
        self.guard = GuardLink.from_env()
        self._kill_report = take_kill_report()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._comm: BatchedSend | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bulk = BulkClient.for_pool(self.auth, self.tls)  # peers' data answers
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
        app.add_routes(scatter_routes(self))
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
        self.state.address = self.address
        await self.memory.start(on_pause=self._on_pause, on_resume=self._on_resume,
                                on_terminate=self._on_terminate)
        self.guard.serve(self._spill_all)
        await self._connect()
        self._background.append(asyncio.create_task(self._heartbeats()))
        log.info("worker %s at %s, scheduler %s", self.name, self.address, self.scheduler)
        return self

    async def close(self, exit_code: int = 0) -> None:
        if self._closing:
            return
        self._closing = True
        self.exit_code = exit_code
        me = asyncio.current_task()
        others = [t for t in [*self._background, *self._tasks] if t is not me]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._comm is not None:
            await self._comm.close()
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._bulk.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        # frees, prefetches and transfers in I/O threads finish first: a spill file being
        # deleted there while the spill directory is removed raced it (FileNotFoundError)
        await asyncio.to_thread(self.io_executor.shutdown, wait=True)
        await self.memory.close()
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
            **({"memory_kill": self._kill_report} if self._kill_report else {}),
        })
        self._kill_report = None
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
        self.state.scheduler_lost()
        try:
            await self._connect()
        except CommError as exc:
            log.error("%s; exiting", exc)
            await self.close(exit_code=1)

    def _send(self, msg: Message) -> None:
        if self._comm is not None:
            self._comm.send(msg)

    def send_to_scheduler(self, msg: Message) -> None:
        self._send(msg)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self._send({"op": "heartbeat-worker", "memory": self.figures(),
                        "executing": len(self.state.executing),
                        "ready": self.state.ready_count})

    def figures(self) -> dict[str, Any]:
        """Memory figures for the scheduler, with the spill cap (retirement plans by it)."""
        return {**self.memory.figures(), "max_spill": self.memory.config.max_spill}

    # ------------------------------------------------------------------ messages

    def _handle(self, msg: Message) -> None:
        if msg["op"] == "close-worker":
            log.info("scheduler asked this worker to close: %s", msg["reason"])
            self._spawn(self.close())
            return
        if msg["op"] == "expect-data":
            self.scatter_inbox.expect(msg)
            return
        self._do(self.state.handle(msg))

    def _do(self, instructions: list[Instruction]) -> None:
        """Carry out the state machine's instructions, in order."""
        for ins in instructions:
            match ins:
                case Send(msg):
                    self._send(msg)
                case Execute(key):
                    self._execute(self.state.executing[key])
                case Fetch(who_has, nbytes):
                    self._spawn(self._fetch(who_has, nbytes))
                case Free(keys):
                    self._free(keys)
                case SpillFirst(nbytes):
                    self._spawn(self._spill_first(nbytes))
                case Restart(reason):
                    self._spawn(self._restart_now(reason))
        if not self._closing:
            self.prefetcher.ahead(self.state.upcoming(self.prefetcher.depth))

    def _spawn(self, coro: Any) -> None:
        """A background task that is kept referenced and whose crash is logged."""
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker background task failed", exc_info=task.exception())

    def report_lost(self, keys: list[str]) -> None:
        """Tell the scheduler these keys are gone here (e.g. a corrupt spill file).

        Thread-safe: called from I/O threads too.
        """
        loop = self._loop
        loop.call_soon_threadsafe(self._send, {"op": "lost-keys", "keys": list(keys)})

    def forget(self, key: str) -> None:
        """Drop ``key`` here (thread-safe: called from I/O threads too)."""
        data = self.memory.data
        try:
            _, blob = data.detach(key)
        except KeyError:
            return
        if blob is not None:
            data.discard(blob)

    def _free(self, keys: list[str]) -> None:
        """On the event loop: the keys are gone at once (so a copy asked for right after
        is fetched anew, not reported as held while its deletion waits for a thread); their
        values are let go of and their spill files deleted in an I/O thread."""
        data = self.memory.data
        values: list[Any] = []
        blobs = []
        for key in keys:
            try:
                value, blob = data.detach(key)
            except KeyError:
                continue  # freed twice (released and cancelled), or never stored
            values.append(value)
            if blob is not None:
                blobs.append(blob)
        if values:
            self._loop.run_in_executor(self.io_executor, _let_go, data, values, blobs)

    def _room(self) -> Room:
        config = self.memory.config
        limit, ceiling = config.acting_limit, config.run_bytes
        if limit is None or ceiling is None:  # no limit, or switched off: admit everything
            return Room(None, 0, 0, 0)
        r = self.memory.reading()
        return Room(limit, ceiling, self.memory.used_bytes(r),
                    0 if r.spill_full else r.spillable)

    # ------------------------------------------------------------------ dependencies

    async def _fetch(self, who_has: dict[str, list[str]], nbytes: dict[str, int]) -> None:
        """Fetch and store; any failure fails the waiting tasks instead of stranding them."""
        error = ""
        stored: dict[str, int] = {}  # reported batch by batch as they are stored
        deferred: dict[str, list[str]] = {}
        try:
            deferred = await self.transfers.fetch(self._bulk, self.address, who_has,
                                                  nbytes, stored)
        except Exception as exc:  # noqa: BLE001 - storing failed (disk, memory, unpickling)
            log.error("fetching %d keys failed: %s", len(who_has), exc)
            error = f"{type(exc).__name__}: {exc}"
        failed = [k for k in who_has if k not in stored and k not in deferred]
        if failed or deferred:
            self._do(self.state.fetch_done({}, failed, error, deferred))

    # ------------------------------------------------------------------ execution

    def _execute(self, wt: WorkerTask) -> None:
        fut = self._loop.run_in_executor(self.executor, self._run, wt)
        fut.add_done_callback(functools.partial(self._task_done, wt))

    def _run(self, wt: WorkerTask) -> tuple[Message, int]:
        """In a task thread: load inputs, run, store the result. Returns (report, peak)."""
        self.guard.task_started(wt.key)
        self.peaks.start(wt.key)
        try:
            report = self._run_measured(wt)
        finally:
            peak = self.peaks.stop(wt.key)
            self.guard.task_stopped(wt.key)
        return report, peak

    def _run_measured(self, wt: WorkerTask) -> Message:
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
        nbytes = sizeof(result)
        too_large = self._too_large(wt.key, nbytes)
        if too_large is not None:
            return too_large
        try:
            self.memory.data[wt.key] = result
        except Exception as exc:  # noqa: BLE001 - storing failed (e.g. spill store broken)
            return _error_report(wt.key, exc)
        report: Message = {"op": "task-finished", "key": wt.key, "nbytes": nbytes,
                           "type": type(result).__qualname__, "duration": duration}
        if wt.inline and nbytes <= INLINE_LIMIT:
            value = inline_value(result)
            if value is not None:
                report["value"] = value
        return report

    def _too_large(self, key: str, nbytes: int) -> Message | None:
        """A result larger than the worker's terminate line cannot be kept: spilled, it
        could never be read back to be served or used (a value is read whole). Such results
        exist: ``numpy.zeros`` or ``bytes(n)`` of lazily zeroed pages cost no memory until
        touched. Refused as ``cannot-fit``, the task goes to a larger worker or fails with
        TaskMemoryError, instead of each worker that reads it back being killed in turn."""
        config = self.memory.config
        line = config.run_bytes
        if line is None or nbytes <= line:
            return None
        return {"op": "cannot-fit", "key": key, "peak": nbytes, "limit": config.limit,
                "reason": f"its result alone is {nbytes / 1e6:.0f} MB, more than this worker "
                          f"may hold ({line / 1e6:.0f} MB)"}

    def _task_done(self, wt: WorkerTask, fut: asyncio.Future[tuple[Message, int]]) -> None:
        if fut.cancelled() or self._closing:
            self.state.executing.pop(wt.key, None)
            return
        report, peak = fut.result()
        limit = self.memory.config.limit
        large = bool(limit and report.get("nbytes", 0) * 100 > limit)
        if report["op"] == "cancelled":
            self.state.executing.pop(wt.key, None)
            self._do(self.state.start_ready())
            return
        instructions = self.state.task_done(wt.key, report, peak, start=not large)
        self._do(instructions)
        if large:
            # A large result: let the memory manager act on it (spill, pause) before the
            # next task allocates on top, instead of at its next reading.
            self._spawn(self._settle_memory_then_start())

    async def _settle_memory_then_start(self) -> None:
        await self.memory.check_now()
        if not self._closing:  # a memory restart may be closing the worker meanwhile
            self._do(self.state.start_ready())

    async def _spill_first(self, nbytes: int) -> None:
        await asyncio.to_thread(self.memory.data.spill_bytes, nbytes)
        self._do(self.state.spilled())

    def _spill_all(self) -> int:
        """For the supervisor, in the guard link's thread: spill all that can be."""
        data = self.memory.data
        data.spill_bytes(data.managed)
        return 0 if data.spill_full else data.spillable

    # ------------------------------------------------------------------ memory callbacks

    async def _on_pause(self, reason: str = "") -> None:
        if self.state.paused:
            return  # already paused: nothing new to tell
        log.info("paused: %s", reason)  # the memory manager warns, rate-limited
        self.state.pause()
        self._send({"op": "worker-status", "status": "paused", "reason": reason})

    async def _on_resume(self, reason: str = "") -> None:
        if not self.state.paused:
            return
        log.info("resumed: %s", reason)
        self._send({"op": "worker-status", "status": "running", "reason": reason})
        self._do(self.state.resume())

    async def _on_terminate(self, reason: str) -> None:
        log.error("memory restart: %s", reason)
        rss = self.memory.reading().process
        baseline = self.peaks.baseline()
        task_peak = None if baseline is None else max(0, rss - baseline)
        self._do(self.state.memory_restart(reason, rss, task_peak))

    async def _restart_now(self, reason: str) -> None:
        """Exit at once: the allocating task is not waited for (it may never finish)."""
        self._closing = True
        if self._comm is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._comm.flush(), 1.0)
        logging.shutdown()
        os._exit(EXIT_MEMORY_RESTART)

    # ------------------------------------------------------------------ probes

    async def _metrics(self, request: web.Request) -> web.Response:
        from ..dashboard.metrics import metrics_response, render_worker_metrics

        extra = {"nthreads": self.nthreads, "keys": len(self.memory.data),
                 "tasks": {"executing": len(self.state.executing),
                           "ready": self.state.ready_count},
                 "status": "paused" if self.memory.paused else "running"}
        return metrics_response(render_worker_metrics(self.name, self.memory.figures(), extra))

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ready_probe(self, request: web.Request) -> web.Response:
        if self._ws is None or self._ws.closed:
            return web.Response(status=503, text="not connected to the scheduler")
        return web.Response(text="ok")


def _let_go(data: Any, values: list[Any], blobs: list[Any]) -> None:
    """In an I/O thread: the last references to freed values (a large one takes a while
    to deallocate), then their spill files (milliseconds each)."""
    values.clear()
    for blob in blobs:
        data.discard(blob)


def _error_report(key: str, exc: BaseException) -> Message:
    tb = "".join(traceback.format_exception(exc))
    text = f"{type(exc).__name__}: {exc}"
    try:
        blob = cloudpickle.dumps(exc)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - the exception itself may not pickle
        blob = cloudpickle.dumps(TaskError(text, tb))
    return {"op": "task-erred", "key": key, "exception": blob, "traceback": tb, "text": text}


def inline_value(result: Any) -> bytes | None:
    """A small result's frames in one bytes object (``protocol.INLINE_LIMIT``), else None:
    too large once serialized, or not serializable (a gather will say why)."""
    try:
        frames = serialize.dumps(result)
    except Exception:  # noqa: BLE001 - pickling runs user code, which may raise anything
        return None
    packed = serialize.pack_frames(frames)
    return packed if len(packed) <= INLINE_LIMIT else None
