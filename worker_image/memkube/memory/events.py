"""Kernel memory notifications for a cgroup, so the monitor reacts faster than its poll.

Sources, registered where the kernel and permissions allow (each is optional):

- cgroup v1: an eventfd per usage threshold (``cgroup.event_control`` on
  ``memory.usage_in_bytes``; fires when usage crosses it either way), one on
  ``memory.pressure_level`` (``medium``: the kernel is reclaiming hard) and one on
  ``memory.oom_control`` (the cgroup hit its limit).
- cgroup v2: ``memory.events`` (the kernel raises POLLPRI when ``high``/``max``/``oom``
  counters change) and a PSI trigger on ``memory.pressure``.

A daemon thread polls the descriptors and calls ``notify(source)``; the callback must be
cheap and thread-safe (the manager hands it to its event loop). Not covered: what to do
about it (``policy.py``).
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

from .cgroup import CgroupMemory

logger = logging.getLogger(__name__)

# PSI trigger: wake when tasks stalled on memory for 50 ms within a 1 s window.
PSI_TRIGGER = b"some 50000 1000000"


class MemoryEvents:
    """Kernel memory signals of one cgroup, delivered to ``notify`` from a thread."""

    def __init__(
        self, cgroup: CgroupMemory, thresholds: list[int], notify: Callable[[str], None]
    ) -> None:
        self._cgroup = cgroup
        self._thresholds = sorted({t for t in thresholds if t > 0})
        self._notify = notify
        self._fds: dict[int, tuple[str, int, str]] = {}  # fd -> (source, poll mask, kind)
        self._owned: list[int] = []  # every fd to close
        self._wake = -1
        self._thread: threading.Thread | None = None
        self.sources: list[str] = []

    def start(self) -> bool:
        """Register what the kernel allows and start the thread; False if nothing could be."""
        if self._cgroup.version == 1:
            self._register_v1()
        else:
            self._register_v2()
        if not self._fds:
            self._close_fds()
            return False
        self._wake = os.eventfd(0, os.EFD_CLOEXEC)
        self._owned.append(self._wake)
        self._thread = threading.Thread(target=self._run, name="memkube-memory-events", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        """Stop the thread and close every descriptor (the kernel drops the registrations)."""
        if self._thread is not None:
            os.eventfd_write(self._wake, 1)
            self._thread.join()
            self._thread = None
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in self._owned:
            os.close(fd)
        self._owned.clear()
        self._fds.clear()

    def _register_v1(self) -> None:
        path = self._cgroup.path
        control = path / "cgroup.event_control"
        for threshold in self._thresholds:
            self._v1_event(
                control, path / "memory.usage_in_bytes", f"usage>{threshold}", str(threshold)
            )
        self._v1_event(control, path / "memory.pressure_level", "pressure", "medium")
        self._v1_event(control, path / "memory.oom_control", "oom", "")

    def _v1_event(
        self, control: os.PathLike[str], target: os.PathLike[str], name: str, argument: str
    ) -> None:
        try:
            target_fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            logger.debug("cannot open %s for notifications: %s", target, exc)
            return
        self._owned.append(target_fd)
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._owned.append(efd)
        line = f"{efd} {target_fd} {argument}".strip()
        try:
            with open(control, "w") as f:
                f.write(line)
        except OSError as exc:
            # read-only /sys/fs/cgroup in most containers: the poll still works
            logger.debug("cannot register %s on %s: %s", name, control, exc)
            return
        self._fds[efd] = (name, select.POLLIN, "eventfd")
        self.sources.append(name)

    def _register_v2(self) -> None:
        path = self._cgroup.path
        try:
            fd = os.open(path / "memory.events", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            logger.debug("cannot open memory.events: %s", exc)
        else:
            self._owned.append(fd)
            os.read(fd, 4096)  # arm: the kernel signals changes after the first read
            self._fds[fd] = ("events", select.POLLPRI | select.POLLERR, "kernfs")
            self.sources.append("events")
        try:
            fd = os.open(path / "memory.pressure", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            logger.debug("cannot open memory.pressure: %s", exc)
            return
        self._owned.append(fd)
        try:
            os.write(fd, PSI_TRIGGER + b"\0")
        except OSError as exc:
            logger.debug("cannot set a PSI trigger: %s", exc)
            return
        self._fds[fd] = ("pressure", select.POLLPRI, "psi")
        self.sources.append("pressure")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake, select.POLLIN)
        for fd, (_, mask, _) in self._fds.items():
            poller.register(fd, mask)
        while True:
            ready = poller.poll()
            fired = []
            for fd, _mask in ready:
                if fd == self._wake:
                    return
                name, _, kind = self._fds[fd]
                self._drain(fd, kind)
                fired.append(name)
            for name in fired:
                self._notify(name)

    def _drain(self, fd: int, kind: str) -> None:
        """Reset the descriptor so it signals the next change, not this one again."""
        if kind == "kernfs":
            os.lseek(fd, 0, os.SEEK_SET)
            os.read(fd, 4096)
        elif kind == "eventfd":
            try:
                os.eventfd_read(fd)
            except BlockingIOError:
                pass  # another wake-up already consumed the counter
