"""The worker's end of the line to its supervisor (:mod:`memkube.guard`).

The supervisor passes one end of a socket pair in ``MEMKUBE_GUARD_FD``. Over it the worker
says which tasks run (``+key`` / ``-key`` lines, written by the task threads themselves, so
the supervisor knows them even if it has to kill this process mid-task), and a thread of its
own answers ``spill`` requests: ``spilling`` at once (the interpreter is not held by a task),
then it spills every value it can, off the event loop and without waiting for it, and
answers ``spilled <bytes still spillable>``.

``MEMKUBE_GUARD_REPORT`` carries the supervisor's account of the previous worker's memory
kill (JSON), which the worker hands the scheduler when it registers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

GUARD_FD_ENV = "MEMKUBE_GUARD_FD"
GUARD_REPORT_ENV = "MEMKUBE_GUARD_REPORT"


def take_kill_report() -> dict[str, Any] | None:
    text = os.environ.pop(GUARD_REPORT_ENV, None)
    if not text:
        return None
    try:
        report = json.loads(text)
    except ValueError:
        log.warning("ignoring a malformed memory-kill report from the supervisor")
        return None
    return report if isinstance(report, dict) else None


class GuardLink:
    """Task start/stop notices to the supervisor, and its spill requests served in a thread."""

    def __init__(self, sock: socket.socket | None) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls) -> GuardLink:
        fd = os.environ.pop(GUARD_FD_ENV, None)
        if not fd:
            return cls(None)
        return cls(socket.socket(fileno=int(fd)))

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _write(self, line: str) -> None:
        if self._sock is None:
            return
        try:
            with self._lock:
                self._sock.sendall(line.encode() + b"\n")
        except OSError:
            self._sock = None  # the supervisor is gone: nothing to tell

    def task_started(self, key: str) -> None:
        self._write("+" + key.replace("\n", " "))

    def task_stopped(self, key: str) -> None:
        self._write("-" + key.replace("\n", " "))

    def serve(self, spill_all: Callable[[], int]) -> None:
        """Answer spill requests in a daemon thread; ``spill_all`` returns what is left."""
        if self._sock is None:
            return
        self._thread = threading.Thread(target=self._serve, args=(spill_all,), daemon=True,
                                        name="memkube-guard-link")
        self._thread.start()

    def _serve(self, spill_all: Callable[[], int]) -> None:
        sock = self._sock
        assert sock is not None
        buf = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip() == b"spill":
                    # at once: this thread ran, so no task holds the interpreter; spilling
                    # everything may take a while on a slow disk
                    self._write("spilling")
                    try:
                        left = spill_all()
                    except Exception:
                        log.exception("spilling for the supervisor failed")
                        left = -1
                    self._write(f"spilled {left}")
