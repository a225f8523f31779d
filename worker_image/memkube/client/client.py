"""The memkube client: submit work, hold futures, move data in and out of the pool.

``Client(address, token=)`` connects to a scheduler; ``Client(cluster)`` to a local pool;
``Client()`` starts a :class:`~memkube.local.LocalCluster` it owns. The synchronous API runs
an event loop in a background thread; ``asynchronous=True`` uses the caller's loop and
every method returns an awaitable.

Control messages go over one websocket (batched); data as ``transfer.py`` says (only the
scheduler must be reachable; workers the client reaches are gathered from directly).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Self, TypeVar

import aiohttp
import cloudpickle

from ..addresses import parse_address
from ..bulk import BulkClient
from ..errors import (
    AuthenticationError,
    CancelledError,
    CommError,
    ProtocolError,
    RetireError,
    TimeoutError,
)
from ..loop import LoopThread
from ..protocol import MAX_FRAME, BatchedSend, Message, ops_allowed, receive_ops
from ..security import Auth, TLSConfig, token_from_env
from ..taskspec import call_spec, replace_refs, task_key
from . import transfer
from .direct import Routes
from .futures import (
    CANCELLED,
    ERROR,
    FINISHED,
    Future,
    FutureState,
)
from .futures import (
    as_list as _as_list,
)
from .futures import (
    collect_futures as _collect_futures,
)
from .futures import (
    rebuild as _rebuild,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEDULER_OPS = ops_allowed("welcome", "key-in-memory", "task-erred-client", "key-cancelled",
                            "reply", "error")
_priority_counter = itertools.count()

#: Bytes of inline results (``protocol.INLINE_LIMIT`` each) a client keeps at most: a
#: million small futures never gathered must not hold gigabytes here.
INLINE_BUDGET = 64 << 20


class Client:
    """Connects to a memkube pool. See the module docstring."""

    def __init__(
        self,
        address: Any = None,
        *,
        token: str | None = None,
        asynchronous: bool = False,
        timeout: float = 30.0,
        tls: TLSConfig | None = None,
        name: str | None = None,
        **cluster_kwargs: Any,
    ) -> None:
        self._cluster = None
        self._owns_cluster = False
        if address is None:
            from ..local import LocalCluster

            address = LocalCluster(**cluster_kwargs)
            self._owns_cluster = True
        if hasattr(address, "scheduler_address"):
            self._cluster = address
            token = token or getattr(address, "token", None)
            address = address.scheduler_address
        self.address = parse_address(str(address))
        self.auth = Auth(token_from_env(token))
        self.tls = tls or TLSConfig()
        self.routes = Routes()  # which workers this client reaches for direct gathers
        self.id = f"{name or 'client'}-{uuid.uuid4().hex[:12]}"
        self.asynchronous = asynchronous
        self.timeout = timeout
        self.status = "new"
        # A synchronous client of an in-process LocalCluster runs on the cluster's loop
        # thread: one thread fewer contending for the GIL with the scheduler's, 0.3 ms of
        # each 3 ms round trip (bench/FINDINGS.md F14).
        lent = getattr(self._cluster, "loop_thread", None)
        self._loop_thread: LoopThread | None = None
        if not asynchronous:
            self._loop_thread = lent if isinstance(lent, LoopThread) \
                else LoopThread("memkube-client")
        self._owns_loop = self._loop_thread is not None and self._loop_thread is not lent
        self._loop: asyncio.AbstractEventLoop | None = (
            self._loop_thread.loop if self._loop_thread else None)
        self._refs: dict[str, int] = {}
        self._states: dict[str, FutureState] = {}
        self.inline_bytes = 0  # of results kept inline in the states (a figure, and the budget)
        self._lock = threading.Lock()
        self._to_release: set[str] = set()
        self._scopes: list[list[Future]] = []
        self._persisted: dict[str, Future] = {}
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._next_id = itertools.count(1)
        self._comm: BatchedSend | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bulk = BulkClient.for_pool(self.auth, self.tls)  # data answers (gathers)
        self._listener: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        if not asynchronous:
            self.sync(self._start)

    # ------------------------------------------------------------------ sync / async plumbing

    def sync(self, func: Callable[..., Coroutine[Any, Any, T]], *args: Any,
             timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``func(*args)``: blocking in sync mode, an awaitable in async mode."""
        coro = func(*args, **kwargs)
        if timeout is not None:
            coro = _with_timeout(coro, timeout)
        if self.asynchronous:
            return coro
        assert self._loop_thread is not None
        return self._loop_thread.run(coro)

    def _loop_call(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback(*args)
        else:
            loop.call_soon_threadsafe(callback, *args)

    def _on_loop_wait(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback`` in the event loop and wait for it (at once when already there)."""
        if self._loop_thread is None or not self._loop_thread.alive:
            self._loop_call(callback, *args)
            return

        async def run() -> None:
            callback(*args)

        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            callback(*args)
        else:
            self._loop_thread.run(run())

    def __await__(self) -> Any:
        return self._start().__await__()

    async def _start(self) -> Self:
        if self.status == "running":
            return self
        if self._cluster is not None and hasattr(self._cluster, "_ensure_started"):
            await self._cluster._ensure_started()
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            headers=self.auth.headers(),
            connector=aiohttp.TCPConnector(ssl=self.tls.client_context() or False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
        )
        try:
            self._ws = await self._session.ws_connect(self.address.ws + "/ws/client",
                                                      max_msg_size=MAX_FRAME)
        except aiohttp.WSServerHandshakeError as exc:
            await self._session.close()
            if exc.status == 401:
                raise AuthenticationError(
                    f"scheduler {self.address} rejected the token") from exc
            raise CommError(f"cannot connect to {self.address}: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            await self._session.close()
            raise CommError(f"cannot connect to scheduler {self.address}: {exc}") from exc
        self._comm = BatchedSend(self._ws.send_bytes)
        self._comm.start()
        self._comm.send({"op": "register-client", "client": self.id})
        self._listener = asyncio.create_task(self._listen(self._ws))
        self.status = "running"
        return self

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for ops in receive_ops(ws, SCHEDULER_OPS, "the scheduler"):
                for msg in ops:
                    self._handle(msg)
        finally:
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(CommError("connection to the scheduler lost"))
            self._replies.clear()
            if self.status == "running":
                log.warning("lost the connection to the scheduler %s; reconnecting",
                            self.address)
                self.status = "reconnecting"
                self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Reconnect with the same id within ``timeout``: the scheduler keeps our futures
        for its grace period and repeats what we missed; else fail what is pending."""
        assert self._session is not None
        if self._comm is not None:
            await self._comm.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while self.status == "reconnecting" and loop.time() < deadline:
            try:
                ws = await self._session.ws_connect(self.address.ws + "/ws/client",
                                                    max_msg_size=MAX_FRAME)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.2)
                continue
            self._ws = ws
            self._comm = BatchedSend(ws.send_bytes)
            self._comm.start()
            self._comm.send({"op": "register-client", "client": self.id})
            # Ask again for what we wait on: a scheduler that forgot a key (our grace period
            # ran out, or it restarted) answers key-cancelled instead of leaving us waiting.
            pending = [k for k, st in self._states.items() if not st.done()]
            if pending:
                self._comm.send({"op": "update-graph", "tasks": [], "wants": pending})
            self.status = "running"
            self._listener = loop.create_task(self._listen(ws))
            log.info("reconnected to the scheduler %s", self.address)
            return
        if self.status == "reconnecting":
            self.status = "disconnected"
            for state in list(self._states.values()):
                if not state.done():
                    state.cancel("connection to the scheduler lost")

    def _handle(self, msg: Message) -> None:
        op = msg["op"]
        state = self._states.get(msg.get("key", ""))
        if op == "key-in-memory":
            if state is not None:
                self._keep_inline(state, msg.get("value"))
                state.finish(msg["type"])
        elif op == "task-erred-client":
            if state is not None:
                state.fail(bytes(msg["exception"]), msg["traceback"], msg["text"])
        elif op == "key-cancelled":
            if state is not None:
                state.cancel(msg["reason"])
        elif op == "reply":
            fut = self._replies.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg["result"])
        elif op == "error":
            self._scheduler_error(msg)

    def _keep_inline(self, state: FutureState, value: bytes | None) -> None:
        """Keep a small result that came inline, while the client holds at most
        :data:`INLINE_BUDGET` bytes of them (beyond, results are fetched as usual)."""
        if state.value is not None:
            self.inline_bytes -= len(state.value)
            state.value = None
        if value is not None and self.inline_bytes + len(value) <= INLINE_BUDGET:
            state.value = bytes(value)
            self.inline_bytes += len(value)

    def _scheduler_error(self, msg: Message) -> None:
        """The scheduler refused or failed one of our operations: fail what waits on it."""
        text = msg["message"]
        log.error("scheduler error: %s", text)
        fut = self._replies.pop(msg["id"], None) if "id" in msg else None
        if fut is not None and not fut.done():
            fut.set_exception(ProtocolError(text))
        blob = cloudpickle.dumps(ProtocolError(text))
        for key in msg.get("keys", ()):
            state = self._states.get(key)
            if state is not None and not state.done():
                state.fail(blob, "", text)

    async def _request(self, msg: Message) -> Any:
        if self._comm is None or self.status != "running":
            raise CommError("the client is not connected")
        rid = next(self._next_id)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        self._comm.send({**msg, "id": rid})
        return await fut

    # ------------------------------------------------------------------ references

    def _acquire_ref(self, key: str) -> FutureState:
        with self._lock:
            self._refs[key] = self._refs.get(key, 0) + 1
            self._to_release.discard(key)
            state = self._states.get(key)
            if state is None:
                assert self._loop is not None
                state = self._states[key] = FutureState(self._loop)
        return state

    def _release_ref(self, key: str) -> None:
        with self._lock:
            count = self._refs.get(key, 0) - 1
            if count > 0:
                self._refs[key] = count
                return
            self._refs.pop(key, None)
            self._to_release.add(key)
            first = len(self._to_release) == 1
        if first and self.status == "running":
            self._loop_call(self._flush_releases)

    def _flush_releases(self) -> None:
        with self._lock:
            keys = [k for k in self._to_release if k not in self._refs]
            self._to_release.clear()
            for k in keys:
                state = self._states.pop(k, None)
                if state is not None and state.value is not None:
                    self.inline_bytes -= len(state.value)
        if keys and self._comm is not None:
            self._comm.send({"op": "release-keys", "keys": keys})

    def _new_future(self, key: str) -> Future:
        fut = Future(key, self)
        if fut._state.status == CANCELLED:  # submitted again after a cancel or a release
            self._on_loop_wait(fut._state.reset)
        for scope in self._scopes:
            scope.append(fut)
        return fut

    def _is_ref(self, obj: Any) -> str | None:
        if isinstance(obj, Future):
            if obj.client is not self:
                raise ValueError("a future of another client cannot be a task argument")
            return obj.key
        return None

    # ------------------------------------------------------------------ submitting

    def submit(self, func: Callable[..., Any], *args: Any, key: str | None = None,
               pure: bool = True, priority: int = 0, **kwargs: Any) -> Future:
        """Run ``func(*args, **kwargs)`` in the pool; futures in the arguments are inputs."""
        if not callable(func):
            raise TypeError("submit expects a callable as its first argument")
        if key is not None and (not isinstance(key, str) or not key):
            raise TypeError(f"a key must be a non-empty string, not {key!r}")
        deps: set[str] = set()
        # New names, not ``args = ...``: the futures in ``args`` must stay referenced until
        # the graph is sent, or their release could reach the scheduler first.
        spec_args = replace_refs(args, self._is_ref, deps)
        spec_kwargs = replace_refs(kwargs, self._is_ref, deps)
        run_spec = call_spec(func, spec_args, spec_kwargs)
        key = key or task_key(func, run_spec, pure)
        task = {"key": key, "run_spec": run_spec, "deps": sorted(deps),
                "priority": [-priority, next(_priority_counter)]}
        fut = self._new_future(key)
        self._send_graph([task], [key])
        del args, kwargs  # only now may their futures go
        return fut

    def map(self, func: Callable[..., Any], *iterables: Iterable[Any], key: str | None = None,
            pure: bool = True, priority: int = 0, batch_size: int = 5000,
            **kwargs: Any) -> list[Future]:
        """``submit`` for each item of the zipped iterables; one message per batch."""
        if not callable(func):
            raise TypeError("map expects a callable as its first argument")
        func_bytes = cloudpickle.dumps(func)
        name = key or _name_of(func)
        kw_deps: set[str] = set()
        spec_kwargs = replace_refs(kwargs, self._is_ref, kw_deps)
        futures: list[Future] = []
        tasks: list[dict[str, Any]] = []
        base = next(_priority_counter)
        for i, args in enumerate(zip(*iterables, strict=False)):
            deps = set(kw_deps)
            spec_args = replace_refs(args, self._is_ref, deps)
            run_spec = call_spec(func, spec_args, spec_kwargs, func_bytes=func_bytes)
            k = task_key(func, run_spec, pure)
            if name != k.rsplit("-", 1)[0]:
                k = f"{name}-{k.rsplit('-', 1)[1]}"
            tasks.append({"key": k, "run_spec": run_spec, "deps": sorted(deps),
                          "priority": [-priority, base, i]})
            futures.append(self._new_future(k))
            if len(tasks) >= batch_size:
                self._send_graph(tasks, [t["key"] for t in tasks])
                tasks = []
        if tasks:
            self._send_graph(tasks, [t["key"] for t in tasks])
        return futures

    def _send_graph(self, tasks: list[dict[str, Any]], wants: list[str]) -> None:
        if self.status != "running":
            raise CommError("the client is not connected")
        self._loop_call(self._send_now, {"op": "update-graph", "tasks": tasks, "wants": wants})

    def _send_now(self, msg: Message) -> None:
        if self._comm is not None:
            self._comm.send(msg)

    # ------------------------------------------------------------------ results

    def gather(self, futures: Any, errors: str = "raise") -> Any:
        """Values of futures (in the same nested list/dict structure)."""
        return self.sync(self._gather_structure, futures, errors)

    async def _gather_structure(self, futures: Any, errors: str) -> Any:
        found: list[Future] = []
        _collect_futures(futures, found)
        values = await self._gather(found, errors=errors)
        by_key = {f.key: v for f, v in zip(found, values, strict=True)}
        return _rebuild(futures, by_key)

    async def _gather(self, futures: list[Future], errors: str = "raise") -> list[Any]:
        if errors not in ("raise", "skip"):
            raise ValueError("errors must be 'raise' or 'skip'")
        for fut in futures:
            await fut._state.wait()
            if fut._state.status in (ERROR, CANCELLED) and errors == "raise":
                raise fut._state.raisable()
        keys = list(dict.fromkeys(f.key for f in futures if f._state.status == FINISHED))
        values = await self._fetch(keys) if keys else {}
        return [values[f.key] for f in futures if f.key in values or errors == "raise"]

    async def _fetch(self, keys: list[str]) -> dict[str, Any]:
        return await transfer.fetch(self, keys)

    def scatter(self, data: Any, *, hash: bool = True) -> Any:
        """Upload values to the pool; returns futures in the same structure (list/dict/one)."""
        return self.sync(self._scatter, data, hash)

    async def _scatter(self, data: Any, hash_keys: bool) -> Any:
        return await transfer.scatter(self, data, hash_keys)

    # ------------------------------------------------------------------ lifetime

    def cancel(self, futures: Iterable[Future]) -> None:
        keys = [f.key for f in _as_list(futures)]
        for key in keys:
            state = self._states.get(key)
            if state is not None:
                self._loop_call(state.cancel, "cancelled")
        self._loop_call(self._send_now, {"op": "cancel-keys", "keys": keys})

    def persist(self, collection: Any, keys: Iterable[Any] | None = None) -> Any:
        """Keep results in the pool until :meth:`unpersist`.

        Futures (one, a list or a dict) are pinned; a low-level graph ``{key: task}`` is
        submitted and a dict of futures returned; a Dask collection is submitted and a new
        collection backed by the futures returned.
        """
        from .graphs import persist

        return persist(self, collection, keys)

    def get(self, graph: Any, keys: Any, **kwargs: Any) -> Any:
        """Compute ``keys`` of a ``{key: task}`` graph; usable as ``dask.compute(...,
        scheduler=client.get)``. ``order="breadth"`` switches off memory-aware ordering."""
        from .graphs import get

        return get(self, graph, keys, **kwargs)

    def compute(self, graph: Any, keys: Any = None) -> Any:
        """Submit a graph (or Dask collection) and return futures for ``keys`` (its outputs)."""
        from .graphs import persist

        futures = persist(self, graph, keys)
        if isinstance(futures, dict):
            for fut in futures.values():
                self._persisted.pop(fut.key, None)
        return futures

    def _pin(self, futures: Iterable[Future]) -> None:
        for fut in futures:
            self._persisted[fut.key] = fut

    def unpersist(self, futures: Any) -> None:
        """Drop persisted results from the pool (memory and spill files)."""
        found: list[Future] = []
        _collect_futures(futures, found)
        self._force_release([f.key for f in found], "unpersisted")

    def _force_release(self, keys: list[str], reason: str) -> None:
        def release() -> None:
            for key in keys:
                self._persisted.pop(key, None)
                state = self._states.get(key)
                if state is not None:
                    state.cancel(reason)
            self._send_now({"op": "release-keys", "keys": keys})

        self._on_loop_wait(release)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Release every future created inside when the block exits (also on an error)."""
        created: list[Future] = []
        self._scopes.append(created)
        try:
            yield
        finally:
            self._scopes.remove(created)
            self._force_release(list(dict.fromkeys(f.key for f in created)), "scope exited")

    @contextlib.contextmanager
    def persisted(self, collection: Any) -> Iterator[Any]:
        """``persist`` on entry, ``unpersist`` on exit."""
        result = self.persist(collection)
        try:
            yield result
        finally:
            self.unpersist(result)

    def replicate(self, futures: Iterable[Future], n: int = 2) -> None:
        """Keep ``n`` copies of each future's value on distinct workers."""
        keys = [f.key for f in _as_list(futures)]
        self._loop_call(self._send_now, {"op": "replicate", "keys": keys, "n": n})

    def who_has(self, futures: Any = None) -> Any:
        """``{key: [worker addresses]}`` (an awaitable with an asynchronous client)."""
        found: list[Future] = []
        _collect_futures(futures if futures is not None else [], found)
        return self.sync(self._request, {"op": "who-has", "keys": [f.key for f in found]})

    # ------------------------------------------------------------------ pool

    def scheduler_info(self) -> Any:
        """The pool snapshot, with ``workers`` keyed by address (as Dask's); an awaitable
        with an asynchronous client."""
        return self.sync(self._scheduler_info)

    async def _scheduler_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self._request({"op": "info"})
        info["workers"] = {w["address"]: w for w in info["workers"]}
        return info

    def wait_for_workers(self, n: int = 1, timeout: float | None = None) -> Any:
        return self.sync(self._wait_for_workers, n, timeout=timeout)

    async def _wait_for_workers(self, n: int) -> None:
        # One request that the scheduler answers when the workers are there (it awaits
        # their registrations); the timeout is the caller's.
        await self._request({"op": "wait-for-workers", "n": n})

    def retire_workers(self, names: list[str] | None = None, n: int | None = None) -> Any:
        """Move workers' unique data elsewhere, then stop them; returns who was retired."""
        return self.sync(self._retire_workers, names, n)

    async def _retire_workers(self, names: list[str] | None, n: int | None) -> Any:
        result = await self._request({"op": "retire", "names": names or [],
                                      "n": 0 if n is None else n})
        if "error" in result:
            raise RetireError(result["error"])
        return result

    def memory_report(self) -> str:
        """Print and return a per-worker memory table."""
        from ..diagnostics import format_memory_report

        snapshot = self.sync(self._request, {"op": "info"})
        text = format_memory_report(snapshot)
        print(text)
        return text

    @property
    def dashboard_link(self) -> str:
        return self.address.http + "/dashboard/"

    # ------------------------------------------------------------------ closing

    def close(self) -> Any:
        """Close the connection (and the pool this client started); a synchronous client
        also stops its event-loop thread, unless it runs on its cluster's."""
        if self.asynchronous:
            return self._close()
        assert self._loop_thread is not None
        if self._loop_thread.alive:
            try:
                self.sync(self._disconnect)
            finally:
                if self._owns_loop:
                    self._loop_thread.stop()
        else:  # its cluster was closed first, and the loop with it
            self.status = "closed"
        if self._owns_cluster and self._cluster is not None:
            self._cluster.close()  # from this thread: the cluster's loop may be ours
        return None

    async def _close(self) -> None:
        await self._disconnect()
        if self._owns_cluster and self._cluster is not None:
            await self._cluster._close_async()

    async def _disconnect(self) -> None:
        if self.status == "closed":
            return
        self.status = "closed"
        if self._reconnecting is not None:  # closed while reconnecting: stop trying
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        if self._comm is not None:
            self._flush_releases()
            await self._comm.close()
        if self._ws is not None:
            await self._ws.close()
        if self._listener is not None:
            listener = self._listener
            await asyncio.gather(listener, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._bulk.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    def __repr__(self) -> str:
        return f"<memkube.Client {self.address} {self.status}>"


# ---------------------------------------------------------------------- helpers

async def _with_timeout[R](coro: Coroutine[Any, Any, R], timeout: float) -> R:
    try:
        return await asyncio.wait_for(coro, timeout)
    except builtins.TimeoutError as exc:
        raise TimeoutError(f"did not finish within {timeout} s") from exc


def _name_of(func: Any) -> str:
    from ..taskspec import key_name

    return key_name(func)


__all__ = ["CancelledError", "Client"]
