"""The scheduler's aiohttp shell: websockets, the HTTP API and the data proxy.

A thin layer around :class:`~memkube.scheduler.state.SchedulerState`: each websocket frame
is decoded and validated (:mod:`memkube.protocol`), handed to the state machine, and the
messages it queued are sent through one :class:`~memkube.protocol.BatchedSend` per peer.
Clients never need to reach workers: ``gather`` and ``scatter`` can go through the
scheduler's HTTP endpoints, which talk to workers' ``/data`` endpoints, so a port-forward to
the scheduler is enough. Clients that reach the workers gather and scatter straight from
and to them (``client/direct.py``, ``scheduler/scatter.py``); ``proxied_bytes`` counts what
went through here.

Routes are documented in ``docs/internals.md`` ("Scheduler HTTP API").
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Self

import aiohttp
import msgpack
from aiohttp import web

from .. import serialize
from ..addresses import Address, parse_address
from ..bulk import BulkClient, fetch_bundle
from ..errors import ProtocolError, RetireError
from ..protocol import (
    MAX_FRAME,
    BatchedSend,
    InvalidMessage,
    Message,
    decode_frame,
    encode,
    ops_allowed,
    validate,
)
from ..security import Auth, TLSConfig
from ..serving import (
    peer_session,
    read_limited,
    start_server,
    stream_buffers,
)
from .handlers import apply_client_op, apply_worker_op, error_for
from .model import RETIRING
from .pool import pool_snapshot
from .retire import Retirement, cancel_retirement, plan_retirement
from .state import SchedulerState

log = logging.getLogger(__name__)

WORKER_OPS = ops_allowed(
    "register-worker", "task-finished", "task-erred", "add-keys", "missing-data",
    "lost-keys", "heartbeat-worker", "worker-status", "memory-restart", "reschedule",
    "cannot-fit", "scattered-data",
)
CLIENT_OPS = ops_allowed(
    "register-client", "update-graph", "release-keys", "cancel-keys", "replicate",
    "who-has", "info", "retire", "heartbeat-client", "wait-for-workers", "scatter-plan",
)
#: Client requests that wait: run as tasks, so the client's other messages go on.
WAITING_OPS = frozenset({"retire", "wait-for-workers"})


class Scheduler:
    """Runs a scheduler in the current event loop: ``await Scheduler(...).start()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8786,
        auth: Auth | None = None,
        tls: TLSConfig | None = None,
        replication_factor: int = 1,
        worker_timeout: float = 30.0,
        client_grace: float = 10.0,
        allowed_failures: int = 3,
        worker_saturation: float = 1.1,
    ) -> None:
        self.state = SchedulerState(replication_factor=replication_factor,
                                    allowed_failures=allowed_failures,
                                    worker_saturation=worker_saturation)
        self.host, self.port = host, port
        self.auth = (auth or Auth(None)).require("scheduler")  # no token: refuse to start
        self.tls = tls or TLSConfig()
        self._bulk = BulkClient.for_pool(self.auth, self.tls)  # workers' data answers
        self.worker_timeout = worker_timeout
        self.client_grace = client_grace
        self.started = time.time()
        self._worker_comms: dict[str, BatchedSend] = {}
        self._worker_sockets: dict[str, web.WebSocketResponse] = {}
        self._client_comms: dict[str, BatchedSend] = {}
        self._client_expiry: dict[str, asyncio.TimerHandle] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: dict[str, set[asyncio.Task[None]]] = {}  # waiting client requests
        self.app = self._make_app()
        self.address = ""
        self._workers_changed: asyncio.Condition | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._closing = False
        self.proxied_bytes = {"gather": 0, "scatter": 0}  # value bytes relayed by this proxy

    # ------------------------------------------------------------------ lifecycle

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth.middleware()], client_max_size=MAX_FRAME)
        app.add_routes([
            web.get("/health", self._health),
            web.get("/ready", self._health),
            web.get("/ws/worker", self._worker_ws),
            web.get("/ws/client", self._client_ws),
            web.get("/api/v1/pool", self._pool),
            web.post("/api/v1/retire", self._retire),
            web.post("/api/v1/events", self._report_event),
            web.post("/api/v1/memory-kill", self._memory_kill),
            web.post("/api/v1/gather", self._gather),
            web.post("/api/v1/scatter", self._scatter),
            web.get("/metrics", self._metrics),
        ])
        from ..dashboard import setup_dashboard  # the dashboard is optional to the state

        setup_dashboard(app, self.snapshot, self.auth)
        return app

    async def start(self) -> Self:
        self._session = peer_session(self.auth, self.tls, limit=64)
        self._runner, self.port = await start_server(self.app, self.host, self.port, self.tls)
        scheme = "tls" if self.tls.enabled else "tcp"
        self.address = str(Address(scheme, self.host, self.port))
        self._tasks.append(asyncio.create_task(self._watch_workers()))
        log.info("scheduler at %s", self.address)
        return self

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Refuse new connections (workers reconnect at once), then close every peer at once;
        # a peer that does not answer the close frame is dropped.
        self._closing = True
        sockets = [ws for ws in self._sockets if not ws.closed]
        if sockets:
            await asyncio.wait([asyncio.create_task(ws.close()) for ws in sockets], timeout=2)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._bulk.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def http_address(self) -> str:
        return parse_address(self.address).http

    # ------------------------------------------------------------------ delivering

    def flush(self) -> None:
        """Send everything the state machine queued."""
        to_workers, to_clients = self.state.drain()
        for address, msgs in to_workers.items():
            comm = self._worker_comms.get(address)
            if comm is not None:
                comm.send(*msgs)
        for client_id, msgs in to_clients.items():
            comm = self._client_comms.get(client_id)
            if comm is not None:
                comm.send(*msgs)

    async def _watch_workers(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.worker_timeout / 4))
            for address in self.state.stale_workers(self.worker_timeout):
                log.warning("worker %s missed its heartbeats; removing it", address)
                self.state.remove_worker(address, reason="heartbeat timeout")
                ws = self._worker_sockets.pop(address, None)
                if ws is not None:
                    await ws.close()
            self.flush()

    # ------------------------------------------------------------------ websockets

    async def _open_ws(self, request: web.Request) -> web.WebSocketResponse:
        if self._closing:
            raise web.HTTPServiceUnavailable(text="scheduler is shutting down")
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=None)
        try:
            await ws.prepare(request)
        except UnicodeEncodeError:
            # aiohttp quotes a refused handshake's headers in its 400, and a non-UTF-8 value
            # then fails to encode (a 500): refuse it with a message of our own
            raise web.HTTPBadRequest(text="not a websocket handshake") from None
        self._sockets.add(ws)  # handlers discard it when they return
        return ws

    async def _frames(self, ws: web.WebSocketResponse, allowed: frozenset[str],
                      peer: str) -> Any:
        """Yield each frame's operations (unvalidated: a bad operation is answered, not
        fatal); close the socket with a reason on a frame that cannot be read."""
        async for raw in ws:
            if raw.type == aiohttp.WSMsgType.BINARY:
                try:
                    yield decode_frame(raw.data)
                except ProtocolError as exc:
                    log.warning("closing connection from %s: %s", peer, exc)
                    await ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA,
                                   message=str(exc)[:120].encode())
                    return
            elif raw.type == aiohttp.WSMsgType.TEXT:
                log.warning("closing connection from %s: text frame", peer)
                await ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA,
                               message=b"text frames are not accepted")
                return
            else:
                return

    async def _worker_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open_ws(request)
        peer = str(request.remote)
        address: str | None = None
        try:
            async for ops in self._frames(ws, WORKER_OPS, peer):
                for raw_op in ops:
                    if address is None:
                        msg = validate(raw_op, WORKER_OPS)
                        if msg["op"] != "register-worker":
                            raise ProtocolError("a worker must register first")
                        address = self._register_worker(msg, ws)
                        continue
                    try:
                        apply_worker_op(self.state, address, validate(raw_op, WORKER_OPS))
                    except InvalidMessage as exc:
                        log.warning("ignored a bad message from worker %s: %s", address, exc)
                    except Exception:
                        log.exception("handling %s from worker %s failed",
                                      _op_name(raw_op), address)
                self.flush()
        except ProtocolError as exc:
            log.warning("closing worker connection from %s: %s", peer, exc)
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION)
        finally:
            self._sockets.discard(ws)
            if address is not None and self._worker_sockets.get(address) is ws:
                comm = self._worker_comms.pop(address)
                del self._worker_sockets[address]
                await comm.close()
                self.state.remove_worker(address)
                self.flush()
        return ws

    def _register_worker(self, msg: Message, ws: web.WebSocketResponse) -> str:
        address = msg["address"]
        self.state.add_worker(
            address, msg["name"], msg["nthreads"], host=msg["host"], node=msg["node"],
            pid=msg["pid"], keys={str(k): int(v) for k, v in msg["keys"].items()},
            memory=msg["memory"],
            memory_kill=msg["memory_kill"] if isinstance(msg.get("memory_kill"), dict) else None,
        )
        comm = BatchedSend(ws.send_bytes)
        comm.start()
        self._worker_comms[address] = comm
        self._worker_sockets[address] = ws
        comm.send({"op": "welcome", "client": "", "address": self.address})
        asyncio.get_running_loop().create_task(self._notify_workers_changed())
        return str(address)

    async def _notify_workers_changed(self) -> None:
        if self._workers_changed is None:
            self._workers_changed = asyncio.Condition()
        async with self._workers_changed:
            self._workers_changed.notify_all()

    async def wait_for_workers(self, n: int, timeout: float | None = 60.0, *,
                               running: bool = False) -> None:
        """Return once ``n`` workers are connected (``running``: not retiring); raises
        TimeoutError after ``timeout`` seconds (None: wait as long as it takes)."""
        if self._workers_changed is None:
            self._workers_changed = asyncio.Condition()
        cond = self._workers_changed

        def enough() -> bool:
            workers = self.state.workers.values()
            return sum(1 for w in workers if not running or w.status != RETIRING) >= n

        async with cond:
            await asyncio.wait_for(cond.wait_for(enough), timeout)

    async def _client_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._open_ws(request)
        peer = str(request.remote)
        client_id: str | None = None
        comm: BatchedSend | None = None
        try:
            async for ops in self._frames(ws, CLIENT_OPS, peer):
                for raw_op in ops:
                    if client_id is None:
                        msg = validate(raw_op, CLIENT_OPS)
                        if msg["op"] != "register-client":
                            raise ProtocolError("a client must register first")
                        client_id = msg["client"] or uuid.uuid4().hex
                        timer = self._client_expiry.pop(client_id, None)
                        if timer is not None:
                            timer.cancel()
                        self.state.add_client(client_id)
                        comm = BatchedSend(ws.send_bytes)
                        comm.start()
                        self._client_comms[client_id] = comm
                        comm.send({"op": "welcome", "client": client_id,
                                   "address": self.address})
                        continue
                    assert comm is not None
                    if _is_big_graph(raw_op):
                        await self._update_graph_in_chunks(client_id, raw_op, comm)
                        continue
                    reply = self._client_op(client_id, raw_op, comm)
                    if reply is not None:
                        comm.send(reply)
                self.flush()
        except ProtocolError as exc:
            log.warning("closing client connection from %s: %s", peer, exc)
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION)
        finally:
            self._sockets.discard(ws)
            if client_id is not None and comm is not None:
                if self._client_comms.get(client_id) is comm:
                    del self._client_comms[client_id]
                    for task in self._requests.pop(client_id, set()):
                        task.cancel()  # nobody is left to answer
                await comm.close()
                self._expire_client_later(client_id)
        return ws

    def _expire_client_later(self, client_id: str) -> None:
        """Release a vanished client's futures unless it reconnects within the grace period."""
        cs = self.state.clients.get(client_id)
        if cs is not None:
            cs.connected = False

        def expire() -> None:
            self._client_expiry.pop(client_id, None)
            if client_id not in self._client_comms:
                self.state.remove_client(client_id)
                self.flush()

        loop = asyncio.get_running_loop()
        self._client_expiry[client_id] = loop.call_later(self.client_grace, expire)

    def _client_op(self, client_id: str, raw_op: Any, comm: BatchedSend) -> Message | None:
        """One client operation: its reply, or an error naming the cause (see handlers)."""
        try:
            msg = validate(raw_op, CLIENT_OPS)
            if msg["op"] in WAITING_OPS:
                self._spawn_request(client_id, msg, comm)
                return None
            return apply_client_op(self.state, client_id, msg, self.snapshot)
        except InvalidMessage as exc:
            log.warning("bad message from client %s: %s", client_id, exc)
            return error_for(raw_op, exc)
        except Exception as exc:
            log.exception("handling %s from client %s failed", _op_name(raw_op), client_id)
            return error_for(raw_op, exc)

    async def _update_graph_in_chunks(self, client_id: str, raw_op: Any,
                                      comm: BatchedSend) -> None:
        """A large update-graph, its wants taken ``GRAPH_CHUNK`` at a time with a yield to
        the event loop in between: other clients and workers are served meanwhile (this
        client's next operations wait, so its order is kept)."""
        try:
            msg = validate(raw_op, CLIENT_OPS)
            created = self.state.add_tasks(client_id, msg["tasks"])
        except Exception as exc:
            if not isinstance(exc, InvalidMessage | ProtocolError):
                log.exception("handling update-graph from client %s failed", client_id)
            comm.send(error_for(raw_op, exc))
            return
        wants = msg["wants"]
        try:
            for i in range(0, len(wants), GRAPH_CHUNK):
                if client_id not in self.state.clients:
                    return  # it went away meanwhile (and its tasks with it)
                self.state.client_wants(client_id, wants[i:i + GRAPH_CHUNK])
                self.flush()
                await asyncio.sleep(0)
        except Exception as exc:
            log.exception("handling update-graph from client %s failed", client_id)
            comm.send(error_for(raw_op, exc))
        finally:
            self.state.forget_unwanted(created)
            self.flush()

    def _spawn_request(self, client_id: str, msg: Message, comm: BatchedSend) -> None:
        async def run() -> None:
            try:
                result = await self._waiting_request(msg)
                comm.send({"op": "reply", "id": msg["id"], "result": result})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s from client %s failed", msg["op"], client_id)
                comm.send(error_for(msg, exc))

        task = asyncio.get_running_loop().create_task(run())
        tasks = self._requests.setdefault(client_id, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _waiting_request(self, msg: Message) -> Any:
        if msg["op"] == "wait-for-workers":
            await self.wait_for_workers(msg["n"], timeout=None, running=True)
            return len(self.state.workers)
        names = [str(n) for n in msg["names"]] or None
        n = msg["n"] if names is None else None
        try:
            return await self.retire(names=names, n=n)
        except RetireError as exc:
            return {"error": str(exc)}

    # ------------------------------------------------------------------ HTTP API

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def snapshot(self) -> dict[str, Any]:
        return pool_snapshot(self)

    async def _metrics(self, request: web.Request) -> web.Response:
        from ..dashboard.metrics import metrics_response, render_scheduler_metrics

        return metrics_response(render_scheduler_metrics(self.snapshot()))

    async def _pool(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def retire(self, *, names: list[str] | None = None, n: int | None = None,
                     timeout: float = 300.0) -> dict[str, Any]:
        """Retire workers gracefully; raises RetireError if their data has nowhere to go."""
        done = asyncio.get_running_loop().create_future()
        retirement = plan_retirement(self.state, names=names, n=n)
        def finished(r: Retirement) -> None:
            if not done.done():
                done.set_result(r)

        retirement.on_done = finished
        self.flush()
        if not retirement.finished:
            try:
                await asyncio.wait_for(done, timeout)
            except (TimeoutError, asyncio.CancelledError) as exc:
                closing = cancel_retirement(self.state, retirement)
                self.flush()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                already = f"; {', '.join(closing)} had been told to close" if closing else ""
                raise RetireError(f"retirement did not finish within {timeout} s and was "
                                  f"cancelled{already}") from None
        return retirement.describe()

    async def _retire(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        names, n = body.get("names") if isinstance(body, dict) else None, None
        if isinstance(body, dict) and "n" in body:
            n = body["n"]
        if names is not None and (not isinstance(names, list)
                                  or not all(isinstance(x, str) for x in names)):
            return web.json_response({"error": "names must be a list of strings"}, status=400)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            return web.json_response({"error": "n must be a non-negative integer"}, status=400)
        if (names is None) == (n is None):
            return web.json_response({"error": "give exactly one of names or n"}, status=400)
        try:
            result = await self.retire(names=names, n=n)
        except RetireError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response(result)

    async def _report_event(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            kind, worker = str(body["kind"]), str(body.get("worker", ""))
            message = str(body.get("message", ""))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected {kind, worker, message}"}, status=400)
        self.state.log_event(kind, worker, message)
        return web.json_response({"ok": True})

    async def _memory_kill(self, request: web.Request) -> web.Response:
        """A worker's memory guard killed it: ``{"worker": name, "report": {...}}``."""
        try:
            body = await request.json()
            name, report = str(body["worker"]), body["report"]
            if not isinstance(report, dict):
                raise TypeError("report must be an object")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected {worker, report}"}, status=400)
        self.state.memory_killed(name, report)
        self.flush()
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ data proxy

    async def fetch_from_workers(
        self, keys: list[str], recovery_timeout: float = 600.0
    ) -> tuple[dict[str, list[memoryview]], list[str], dict[str, str]]:
        """Fetch keys from their holders, batched per worker, trying other holders on failure.

        A key whose copies are lost meanwhile is waited for while the pool recomputes it
        (up to ``recovery_timeout``), so a gather during recovery still succeeds.
        """
        items: dict[str, list[memoryview]] = {}
        errors: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + recovery_timeout
        remaining = list(dict.fromkeys(keys))
        while remaining:
            got, errs = await self._fetch_round(remaining)
            items.update(got)
            errors.update(errs)
            remaining = [k for k in remaining if k not in items and k not in errors]
            waitable = [k for k in remaining
                        if k in self.state.tasks and self.state.tasks[k].state != "erred"]
            if not waitable or loop.time() > deadline:
                break
            settled = [self._settle_future(k) for k in waitable]
            # Wait for a recomputation to land, or a little while for the scheduler to
            # notice a dead holder (its connection drop) before trying again.
            await asyncio.wait(settled, timeout=min(2.0, max(0.0, deadline - loop.time())),
                               return_when=asyncio.FIRST_COMPLETED)
        missing = [k for k in keys if k not in items and k not in errors]
        return items, missing, errors

    def _settle_future(self, key: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        def settled() -> None:
            if not fut.done():
                fut.set_result(None)

        self.state.settle_callbacks[key].append(settled)
        return fut

    async def _fetch_round(self, keys: list[str]) -> tuple[
            dict[str, list[memoryview]], dict[str, str]]:
        """One pass: every key tried at each of its current holders at most once."""
        items: dict[str, list[memoryview]] = {}
        errors: dict[str, str] = {}
        pending = set(keys)
        tried: dict[str, set[str]] = {k: set() for k in keys}
        while pending:
            plan: dict[str, list[str]] = {}
            for key in list(pending):
                ts = self.state.tasks.get(key)
                holders = [w for w in (ts.who_has if ts else ()) if w.address not in tried[key]]
                if not holders:
                    pending.discard(key)
                    continue
                # Spread keys over their holders: faster, and a dead holder costs less.
                holder = min(holders, key=lambda w: (w.status == RETIRING,
                                                     len(plan.get(w.address, ())),
                                                     w.executing))
                tried[key].add(holder.address)
                plan.setdefault(holder.address, []).append(key)
            if not plan:
                break
            results = await asyncio.gather(*(
                self._fetch_batch(address, batch) for address, batch in plan.items()))
            for got, _missing, errs in results:
                items.update(got)
                errors.update(errs)
                pending -= got.keys() | errs.keys()
        return items, errors

    async def _fetch_batch(self, address: str, keys: list[str]) -> tuple[
            dict[str, list[memoryview]], list[str], dict[str, str]]:
        try:
            items, missing, errors, _ = await fetch_bundle(self._bulk, parse_address(address),
                                                           keys)
            return items, missing, errors
        except (OSError, ProtocolError) as exc:
            log.warning("could not fetch %d keys from %s: %s", len(keys), address, exc)
            return {}, keys, {}

    async def _gather(self, request: web.Request) -> web.StreamResponse:
        try:
            body = msgpack.unpackb(await request.read())
            keys = [str(k) for k in body["keys"]]
        except Exception:  # noqa: BLE001 - any malformed body is the client's error
            return web.json_response({"error": "body must be msgpack {keys: [...]}"}, status=400)
        items, missing, errors = await self.fetch_from_workers(keys)
        buffers = serialize.pack_bundle(items, missing=missing, errors=errors)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = sum(memoryview(b).nbytes for b in buffers)
        self.proxied_bytes["gather"] += resp.content_length
        await resp.prepare(request)
        for buf in buffers:
            await resp.write(buf)  # memoryviews of the workers' frames: no copy
        await resp.write_eof()
        return resp

    async def _put_on_worker(self, address: str, batch: dict[str, list[memoryview]]
                             ) -> tuple[dict[str, Any] | None, str]:
        """``PUT /data`` of a batch on one worker: (what it stored, or None; why not)."""
        assert self._session is not None
        buffers = serialize.pack_bundle(batch)
        headers = {"Content-Length": str(serialize.nbytes(buffers))}
        try:
            async with self._session.put(parse_address(address).http + "/data",
                                         data=stream_buffers(buffers),
                                         headers=headers) as resp:
                resp.raise_for_status()
                stored: dict[str, Any] = await resp.json()
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, str(exc)
        return stored, ""

    def _free_on_workers(self, holders: dict[str, str]) -> None:
        """Tell workers to drop keys the scheduler never registered (``{key: address}``),
        unless the key is known meanwhile (then it is someone's data)."""
        by_worker: dict[str, list[str]] = {}
        for key, address in holders.items():
            if key not in self.state.tasks:
                by_worker.setdefault(address, []).append(key)
        for address, keys in by_worker.items():
            comm = self._worker_comms.get(address)
            if comm is not None:
                comm.send({"op": "free-keys", "keys": keys})

    async def _scatter(self, request: web.Request) -> web.Response:
        client_id = request.query.get("client", "")
        if not client_id:
            return web.json_response({"error": "scatter needs ?client=<client id>"}, status=400)
        try:
            payload = await read_limited(request, MAX_FRAME)
            items, _, _ = serialize.unpack_bundle(payload)
        except ProtocolError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except web.HTTPException as exc:
            return web.json_response({"error": exc.text}, status=exc.status)
        self.proxied_bytes["scatter"] += len(payload)
        tasks = [k for k in items if k in self.state.tasks
                 and not self.state.tasks[k].scattered]
        if tasks:  # its result on a worker would be replaced by the client's bytes
            return web.json_response(
                {"error": f"key {tasks[0][:80]!r} names a task, not scattered data"},
                status=409)
        workers = [w for w in self.state.workers.values() if w.status == "running"]
        if not workers:
            return web.json_response({"error": "no running workers"}, status=503)
        plan: dict[str, dict[str, list[memoryview]]] = {}
        ordered = sorted(workers, key=lambda w: (w.memory_fraction(), w.nbytes))
        for i, (key, frames) in enumerate(items.items()):
            plan.setdefault(ordered[i % len(ordered)].address, {})[key] = frames
        results = await asyncio.gather(*(
            self._put_on_worker(address, batch) for address, batch in plan.items()))
        placed: dict[str, dict[str, Any]] = {}
        failed = [(address, why) for (address, _), (stored, why)
                  in zip(plan.items(), results, strict=True) if stored is None]
        if failed:
            # All or nothing: what reached some workers (maybe part of a failed batch too)
            # would be held by no one, so it is freed again.
            self._free_on_workers({k: a for a, batch in plan.items() for k in batch})
            address, why = failed[0]
            return web.json_response({"error": f"worker {address}: {why}"}, status=502)
        for (address, _), (stored, _why) in zip(plan.items(), results, strict=True):
            for key, info in (stored or {}).items():
                placed[key] = {**info, "workers": [address]}
        self.state.add_scattered(client_id, placed)
        if client_id not in self._client_comms and client_id not in self._client_expiry:
            # Not (yet) connected: its record expires after the grace unless it registers
            # (a client's first scatter may race its registration), never lives forever.
            self._expire_client_later(client_id)
        self.flush()
        return web.json_response({k: {"nbytes": v["nbytes"], "type": v["type"]}
                                  for k, v in placed.items()})


#: Wants of one update-graph handled per event-loop turn (about 50 ms of work or less).
GRAPH_CHUNK = 2000


def _is_big_graph(raw_op: Any) -> bool:
    return (isinstance(raw_op, dict) and raw_op.get("op") == "update-graph"
            and isinstance(raw_op.get("wants"), list) and len(raw_op["wants"]) > GRAPH_CHUNK)


def _op_name(raw_op: Any) -> str:
    op = raw_op.get("op") if isinstance(raw_op, dict) else None
    return op[:64] if isinstance(op, str) else "an operation"


def encode_ops(*msgs: Message) -> bytes:
    return encode(list(msgs))
