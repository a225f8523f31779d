"""A pool on this machine: the scheduler in a background thread, workers as child processes.

``LocalCluster`` is what ``Client()`` starts when given no address, and what
``memkube local`` runs in the foreground. Each worker is a real process with its own memory
limit (optionally enforced by a child memory cgroup of limit + overhead, as in a pod), so a
worker that hits its terminate threshold exits and is restarted here, as Kubernetes would.

No orphans: workers are started with ``PR_SET_PDEATHSIG`` so they die with this process even
when it is SIGKILLed, and they exit on their own when the scheduler is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Self

from .errors import CommError, ConfigError
from .loop import LoopThread
from .memory import ChildCgroup, parse_memory_limit
from .scheduler import Scheduler
from .security import Auth, new_token
from .worker import EXIT_MEMORY_RESTART

log = logging.getLogger(__name__)

PARENT_PID_ENV = "MEMKUBE_PARENT_PID"
JOIN_CGROUP_ENV = "MEMKUBE_JOIN_CGROUP"
_PR_SET_PDEATHSIG = 1


def adopt_local_supervision() -> None:
    """In a worker the local pool started: join its memory cgroup and die with the pool.

    Done by the child itself at start-up (not in a ``preexec_fn``, which is unsafe in a
    process with threads, as the pool's is): ``PR_SET_PDEATHSIG`` makes the kernel SIGKILL
    this worker when the pool's process dies, even by SIGKILL.
    """
    procs = os.environ.pop(JOIN_CGROUP_ENV, None)
    if procs:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    parent = os.environ.pop(PARENT_PID_ENV, None)
    if parent:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != int(parent):  # the pool died before the line above
            os._exit(1)


@dataclass
class _WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    cgroup: ChildCgroup | None = None
    restarts: int = 0
    expected_exit: bool = False


class LocalCluster:
    """A scheduler and ``n_workers`` worker processes on free ports of this machine."""

    def __init__(
        self,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        memory_limit: str | float | None = "auto",
        *,
        host: str = "127.0.0.1",
        scheduler_port: int = 0,
        token: str | None = None,
        replication_factor: int = 1,
        cgroup: bool = False,
        memory_overhead: int | None = None,
        worker_args: list[str] | None = None,
        restart_workers: bool = True,
        worker_timeout: float = 30.0,
        log_level: str = "WARNING",
        start_timeout: float = 60.0,
    ) -> None:
        if n_workers < 0:
            raise ConfigError("n_workers must be >= 0")
        self.n_workers = n_workers
        self.threads_per_worker = max(1, threads_per_worker)
        self.memory_limit = parse_memory_limit(memory_limit, nworkers_on_host=max(1, n_workers))
        self.host = host
        self.token = token or new_token()
        self.use_cgroup = cgroup
        limit = self.memory_limit or 0
        self.memory_overhead = memory_overhead if memory_overhead is not None else max(
            256 * 2**20, limit // 10)
        self.worker_args = list(worker_args or [])
        self.restart_workers = restart_workers
        self.log_level = log_level
        self._loop = LoopThread("memkube-local")
        self.scheduler = Scheduler(host=host, port=scheduler_port, auth=Auth(self.token),
                                   replication_factor=replication_factor,
                                   worker_timeout=worker_timeout)
        self.workers: dict[str, _WorkerProcess] = {}
        self._counter = 0
        self._past_oom_kills = 0  # kernel OOM kills of worker cgroups already removed
        # workers and their counted kills change on the loop and are read from the caller's
        # thread (oom_kills, worker_pids): a worker leaving is counted in one or the other
        self._accounting = threading.Lock()
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._loop.run(self._start(), timeout=start_timeout)

    # ------------------------------------------------------------------ properties

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    @property
    def dashboard_link(self) -> str:
        return self.scheduler.http_address + "/dashboard/"

    def __repr__(self) -> str:
        return (f"LocalCluster({self.scheduler_address!r}, workers={len(self.workers)}, "
                f"memory_limit={self.memory_limit})")

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        await self.scheduler.start()
        for _ in range(self.n_workers):
            self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())
        await self._wait_for_workers(self.n_workers)

    async def _ensure_started(self) -> None:
        """For Client(cluster): the cluster starts in its constructor, nothing to await."""

    async def _wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.scheduler.state.workers) < n:
            for wp in self.workers.values():
                code = wp.proc.poll()
                if code is not None and code != EXIT_MEMORY_RESTART and not self.restart_workers:
                    raise CommError(f"worker {wp.name} exited with code {code} at start-up")
            if time.monotonic() > deadline:
                raise CommError(f"only {len(self.scheduler.state.workers)} of {n} workers "
                                f"connected within {timeout} s")
            # Woken by each registration; the short timeout only rechecks for dead workers.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.scheduler.wait_for_workers(n), 0.5)

    def _worker_command(self, name: str) -> list[str]:
        cmd = [sys.executable, "-m", "memkube", "worker", self.scheduler.address,
               "--name", name, "--host", self.host, "--port", "0",
               "--nthreads", str(self.threads_per_worker),
               "--memory-limit", str(self.memory_limit or 0),
               "--death-timeout", "10", "--log-level", self.log_level]
        return cmd + self.worker_args

    def _spawn(self, name: str | None = None, restarts: int = 0) -> _WorkerProcess:
        if name is None:
            name = f"local-{self._counter}"
            self._counter += 1
        # MALLOC_TRIM_THRESHOLD_: glibc returns freed memory to the OS promptly instead of
        # letting large freed arrays inflate the process's memory (as Dask's nanny does).
        env = {"MALLOC_TRIM_THRESHOLD_": "65536", **os.environ, "MEMKUBE_TOKEN": self.token,
               PARENT_PID_ENV: str(os.getpid())}
        env.pop("POD_NAME", None)
        cgroup = None
        if self.use_cgroup:
            cgroup = ChildCgroup((self.memory_limit or 0) + self.memory_overhead
                                 if self.memory_limit else None)
            cgroup.__enter__()
            env[JOIN_CGROUP_ENV] = str(cgroup.path / "cgroup.procs")
        # stdout carries only the "worker at ..." banner; logs go to stderr as usual
        proc = subprocess.Popen(self._worker_command(name), env=env,
                                stdout=subprocess.DEVNULL)
        wp = _WorkerProcess(name, proc, cgroup, restarts)
        with self._accounting:
            self.workers[name] = wp
        return wp

    async def _supervise(self) -> None:
        """Restart workers that exit for memory or die, as a pod's restart policy would."""
        while not self._closed:
            await asyncio.sleep(0.2)
            for name, wp in list(self.workers.items()):
                code = wp.proc.poll()
                if code is None or self._closed:
                    continue
                with self._accounting:
                    del self.workers[name]
                    oom = wp.cgroup.oom_kills() if wp.cgroup is not None else 0
                    self._past_oom_kills += oom
                if oom:
                    log.error("worker %s was OOM-killed by the kernel (%d)", name, oom)
                if wp.cgroup is not None:
                    wp.cgroup.__exit__(None, None, None)
                if code == 0 or wp.expected_exit:
                    log.info("worker %s exited", name)
                    continue
                if not self.restart_workers:
                    log.warning("worker %s exited with code %s", name, code)
                    continue
                why = "memory restart" if code == EXIT_MEMORY_RESTART else f"exit code {code}"
                log.warning("worker %s stopped (%s); restarting it", name, why)
                self._spawn(name, wp.restarts + 1)

    def scale(self, n: int) -> None:
        """Grow by starting workers, shrink by retiring them gracefully (no data lost)."""
        self._loop.run(self._scale(n))

    async def _scale(self, n: int) -> None:
        alive = len(self.workers)
        if n > alive:
            for _ in range(n - alive):
                self._spawn()
            await self._wait_for_workers(n)
        elif n < alive:
            result = await self.scheduler.retire(n=alive - n)
            for info in result["retired"]:
                wp = self.workers.get(info["name"])
                if wp is not None:
                    wp.expected_exit = True

    @property
    def loop_thread(self) -> LoopThread:
        """The event-loop thread of the scheduler (in this process); synchronous clients
        of this cluster run on it too."""
        return self._loop

    def close(self) -> None:
        if self._closed:
            return
        self._loop.run(self._close())
        self._loop.stop()

    async def _close_async(self) -> None:
        """Close from another event loop (an asynchronous Client that owns this cluster)."""
        if not self._closed:
            fut = asyncio.run_coroutine_threadsafe(self._close(), self._loop.loop)
            await asyncio.wrap_future(fut)
            self._loop.stop()

    async def _close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        for wp in self.workers.values():
            wp.expected_exit = True
            if wp.proc.poll() is None:
                wp.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for wp in self.workers.values():
            while wp.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if wp.proc.poll() is None:
                wp.proc.kill()
                wp.proc.wait()
            if wp.cgroup is not None:
                wp.cgroup.__exit__(None, None, None)
        with self._accounting:
            self.workers.clear()
        await self.scheduler.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def oom_kills(self) -> int:
        """Kernel OOM kills of worker processes so far (0 without ``cgroup=True``)."""
        with self._accounting:
            live = sum(wp.cgroup.oom_kills() for wp in self.workers.values() if wp.cgroup)
            return self._past_oom_kills + live

    def worker_pids(self) -> dict[str, int]:
        with self._accounting:
            return {name: wp.proc.pid for name, wp in self.workers.items()}

    def run_sync(self, coro: Any) -> Any:
        """Run a coroutine in the cluster's loop (tests and tools inspect the scheduler)."""
        return self._loop.run(coro)
