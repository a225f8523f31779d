"""The supervising process: starts the worker, reads its memory every few ms, acts.

Readings: the worker's RSS from ``/proc/<pid>/statm`` every ``poll`` seconds (default 5 ms,
~20 µs each), and, when this process is in a memory cgroup with a limit (a pod, a local
pool with ``cgroup=True``), that cgroup's usage minus its inactive file cache. Kernel
notifications (cgroup v1 usage thresholds, v2 ``memory.events``/PSI, see
:mod:`memkube.memory.events`) wake the loop early where the cgroup fs lets them be
registered; where it is read-only (pods) only reading is needed. Nothing is written to the
cgroup fs.

Actions (:mod:`.policy`): a spill request over the socket pair to the worker, then SIGKILL
of the worker (never of this process) before the kernel's OOM killer would act. The worker
is then started again with ``MEMKUBE_GUARD_REPORT`` (running task keys, the peak, the
limit) for the scheduler. Exit codes: the worker's own, except that memory restarts (75, a
guard kill, a kernel OOM kill) restart the worker here instead of exiting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..memory.kernelfiles import ProcessRSS
from .policy import GuardConfig, GuardPolicy, GuardReading, Kill, RequestSpill
from .report import KillReporter

log = logging.getLogger("memkube.guard")

EXIT_MEMORY_RESTART = 75  # the worker's own memory restart (kept equal to the worker's)
GUARD_FD_ENV = "MEMKUBE_GUARD_FD"
GUARD_REPORT_ENV = "MEMKUBE_GUARD_REPORT"
GUARD_CHILD_ENV = "MEMKUBE_GUARD_CHILD"
PARENT_PID_ENV = "MEMKUBE_PARENT_PID"


def _rss(read: Callable[[], int]) -> int:
    try:
        return read()
    except (OSError, IndexError, ValueError):  # the worker is gone: its exit comes next
        return 0


@dataclass
class GuardStats:
    starts: int = 0
    guard_kills: int = 0
    worker_restarts: int = 0  # exits with 75
    kernel_kills: int = 0
    spill_requests: int = 0


class CgroupReader:
    """A memory cgroup (default: this process's own), read only: usage every reading (one
    small file), the inactive file cache from ``memory.stat`` every 20th (v1 and v2)."""

    def __init__(self, cg: Any = True) -> None:
        from ..memory.cgroup import own_memory_cgroup

        self.cg = own_memory_cgroup() if cg is True else cg
        self.limit = self.cg.limit() if self.cg is not None else None
        self._inactive = 0
        self._reads = 0

    def usage(self) -> int | None:
        if self.cg is None or self.limit is None:
            return None
        try:
            usage = self.cg.usage()
            if self._reads % 20 == 0:  # memory.stat is longer: every 20th reading
                self._inactive = self.cg.inactive_file()
            self._reads += 1
        except (OSError, ValueError):
            self.cg = None
            return None
        return max(0, usage - self._inactive)

    def oom_kills(self) -> int:
        try:
            return self.cg.oom_kills() if self.cg is not None else 0
        except OSError:
            return 0


class Supervisor:
    """Runs ``memkube worker ARGS`` as a guarded child until it exits for good."""

    def __init__(self, argv: Sequence[str], config: GuardConfig | None, *, poll: float = 0.005,
                 python: str = sys.executable, cgroup: CgroupReader | None = None,
                 reporter: KillReporter | None = None) -> None:
        self.argv = list(argv)
        self.reporter = reporter
        self.cgroup = cgroup if cgroup is not None else CgroupReader()
        base = config or GuardConfig(limit=None)
        if base.cgroup_limit is None and self.cgroup.limit is not None:
            base = dataclasses.replace(base, cgroup_limit=self.cgroup.limit)
        self.config = base
        self.policy = GuardPolicy(base)
        self.poll = poll
        self.python = python
        self.stats = GuardStats()
        self._stopping: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # signals: forwarded to the worker, then this process exits with its code

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = signum
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        events = self._start_events()
        report: dict[str, Any] | None = None
        try:
            while True:
                code, report, memory = self._run_once(report)
                if self._stopping is not None or not memory:
                    return code if code >= 0 else 128 - code
                log.warning("restarting the worker after a memory stop (%s)",
                            (report or {}).get("reason", f"exit code {code}"))
                if report and self.reporter is not None and self.reporter.send(report):
                    report = None  # the scheduler has it: the new worker need not carry it
        finally:
            if events is not None:
                events.close()

    def _start_events(self) -> Any:
        cg, c = self.cgroup.cg, self.config
        if cg is None or c.limit is None:
            return None
        from ..memory.events import MemoryEvents

        lines = [x for x in (c.kill_cgroup, int((c.terminate or 1.0) * c.limit)) if x]

        def notify(_source: str) -> None:
            try:
                os.write(self._wake_w, b"!")
            except BlockingIOError:
                pass

        events = MemoryEvents(cg, lines, notify)
        if events.start():
            log.debug("memory guard listens to kernel events: %s", events.sources)
            return events
        return None

    def _spawn(self, report: dict[str, Any] | None) -> tuple[subprocess.Popen[bytes],
                                                               socket.socket]:
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        env[GUARD_FD_ENV] = str(theirs.fileno())
        env[GUARD_CHILD_ENV] = "1"
        env[PARENT_PID_ENV] = str(os.getpid())
        env.pop(GUARD_REPORT_ENV, None)
        if report:
            env[GUARD_REPORT_ENV] = json.dumps(report)
        proc = subprocess.Popen([self.python, "-m", "memkube", "worker", *self.argv], env=env,
                                pass_fds=(theirs.fileno(),))
        theirs.close()
        mine.setblocking(False)
        self.stats.starts += 1
        return proc, mine

    def _run_once(self, report: dict[str, Any] | None) -> tuple[int, dict[str, Any] | None,
                                                                bool]:
        """Run one worker to its end: (exit code, kill report, whether it was for memory)."""
        oom_before = self.cgroup.oom_kills()
        proc, sock = self._spawn(report)
        self._proc = proc
        if self._stopping is not None:  # a signal raced the start
            proc.send_signal(self._stopping)
        policy = self.policy
        policy.child_started()
        rss = ProcessRSS(proc.pid)
        kill: Kill | None = None
        buf = b""
        watch: list[Any] = [sock, self._wake_r]
        try:
            while True:
                try:
                    ready, _, _ = select.select(watch, [], [], self.poll)
                except InterruptedError:
                    ready = []
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                if sock in ready:
                    buf = self._read_notices(sock, buf, rss)
                code = proc.poll()
                if code is not None:
                    break
                if kill is not None:
                    continue
                reading = GuardReading(time.monotonic(), _rss(rss), self.cgroup.usage())
                for action in policy.step(reading):
                    if isinstance(action, RequestSpill):
                        self.stats.spill_requests += 1
                        try:
                            sock.sendall(b"spill\n")
                        except OSError:
                            pass
                    elif isinstance(action, Kill):
                        kill = action
                        os.kill(proc.pid, signal.SIGKILL)
                        self.stats.guard_kills += 1
                        log.error("memory guard: killed the worker: %s (running: %s)",
                                  action.reason, ", ".join(policy.running) or "no task")
        finally:
            sock.close()
            rss.close()
            self._proc = None
        if kill is not None:
            return code, kill.report, True
        if code == EXIT_MEMORY_RESTART:
            self.stats.worker_restarts += 1
            return code, None, True
        if code == -signal.SIGKILL and self.cgroup.oom_kills() > oom_before:
            self.stats.kernel_kills += 1
            log.error("the kernel OOM-killed the worker; restarting it")
            return code, policy.report("killed by the kernel's OOM killer"), True
        return code, None, False

    def _read_notices(self, sock: socket.socket, buf: bytes,
                      rss: Callable[[], int]) -> bytes:
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return buf
        except OSError:
            return buf
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            if line.startswith("+"):
                self.policy.task_started(line[1:], _rss(rss))
            elif line.startswith("-"):
                self.policy.task_stopped(line[1:])
            elif line.startswith("spilled"):
                self.policy.spill_answered(time.monotonic())
            elif line.startswith("spilling"):
                self.policy.spill_acknowledged(time.monotonic())
        return buf


def guarded_child() -> bool:
    """Whether this process is the worker a supervisor started (then it does not guard)."""
    return os.environ.get(GUARD_CHILD_ENV) == "1"


def mark_as_first_to_kill() -> None:
    """Make the kernel's OOM killer pick this worker before its supervisor (raising one's
    own score is allowed without privileges)."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError as exc:
        log.debug("cannot raise oom_score_adj: %s", exc)
