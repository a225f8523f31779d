"""A child memory cgroup under this process's own cgroup, as a context manager.

Tests, benchmarks and the local pool use it to run worker processes under a memory limit
exactly as a pod would (over the limit, the kernel OOM-kills them)::

    with ChildCgroup(limit=700 * 2**20) as cg:
        proc = subprocess.Popen(cmd, preexec_fn=cg.enter_in_child)
        proc.wait()
        assert cg.oom_kills() == 0

Needs write access to the memory controller (root, or a delegated v2 subtree). Not covered:
reading a process's own cgroup (``cgroup.py``).
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import MemkubeError
from .cgroup import CgroupMemory, own_memory_cgroup


class CgroupUnavailableError(MemkubeError):
    """No writable memory cgroup controller: the reason says what is missing."""


def child_cgroup_unavailable_reason() -> str | None:
    """Why a ChildCgroup cannot be made here, or None if it can (for test skips)."""
    parent = own_memory_cgroup()
    if parent is None:
        return "this process has no memory cgroup (no cgroup v1 memory or v2 mount)"
    if parent.version == 2:
        controllers = parent.path / "cgroup.subtree_control"
        if controllers.exists() and "memory" not in controllers.read_text().split():
            return f"the memory controller is not enabled for children of {parent.path}"
    if not os.access(parent.path, os.W_OK):
        return f"{parent.path} is not writable (needs root or a delegated cgroup)"
    return None


class ChildCgroup:
    """A memory cgroup created under the caller's own one; removed on exit."""

    def __init__(self, limit: int | None, *, name: str | None = None) -> None:
        self.limit = limit
        self.name = name or f"memkube-{os.getpid()}-{secrets.token_hex(4)}"
        self._parent: CgroupMemory | None = None
        self._cgroup: CgroupMemory | None = None

    @property
    def cgroup(self) -> CgroupMemory:
        if self._cgroup is None:
            raise CgroupUnavailableError("the child cgroup is not created yet")
        return self._cgroup

    @property
    def path(self) -> Path:
        return self.cgroup.path

    def __enter__(self) -> Self:
        reason = child_cgroup_unavailable_reason()
        if reason is not None:
            raise CgroupUnavailableError(reason)
        parent = own_memory_cgroup()
        assert parent is not None  # checked by the reason above
        path = parent.path / self.name
        path.mkdir()
        self._parent = parent
        self._cgroup = CgroupMemory(parent.version, path)
        try:
            if self.limit is not None:
                if parent.version == 1:
                    (path / "memory.limit_in_bytes").write_text(str(self.limit))
                else:
                    (path / "memory.max").write_text(str(self.limit))
                    swap = path / "memory.swap.max"
                    if swap.exists():
                        swap.write_text("0")  # as in a pod: no swap to hide an overrun
        except BaseException:
            path.rmdir()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def add(self, pid: int) -> None:
        """Move a process into this cgroup (its children follow it)."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def enter_in_child(self) -> None:
        """For ``subprocess.Popen(preexec_fn=...)``: the child joins before it runs anything."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def usage(self) -> int:
        return self.cgroup.usage()

    def max_usage(self) -> int | None:
        return self.cgroup.max_usage()

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills()

    def pids(self) -> list[int]:
        return self.cgroup.pids()

    def remove(self, timeout: float = 5.0) -> None:
        """Move leftover processes to the parent and delete the cgroup directory."""
        if self._cgroup is None or self._parent is None:
            return
        path = self._cgroup.path
        deadline = time.monotonic() + timeout
        while True:
            for pid in self._cgroup.pids():
                try:
                    (self._parent.path / "cgroup.procs").write_text(str(pid))
                except ProcessLookupError:
                    pass  # it exited meanwhile
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                # EBUSY while an exiting process is still charged to the cgroup
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._cgroup = None
