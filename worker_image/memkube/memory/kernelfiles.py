"""Kernel files read often: through descriptors kept open, read whole at offset 0.

A cgroup or ``/proc`` file regenerates its text when read from offset 0 (a seq_file), so
one descriptor serves every reading: no path walk, open and close each time. That is most
of a reading's cost, and the worker takes one for every task it admits: a cgroup's working
set in 12 µs instead of 140 µs here, RSS in 3 µs instead of psutil's 20 µs
(``bench/FINDINGS.md`` F14). The memory guard reads its worker's RSS and cgroup the same way,
every 5 ms.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

#: Bytes read at once; a longer file (none of the memory files is) is read again whole.
READ_AT_ONCE = 1 << 16


class KeptOpen:
    """The files of one directory, each opened on its first reading and kept open.
    Thread-safe. A reading that fails (the cgroup went away) closes the file, and raises."""

    def __init__(self, directory: Path | str) -> None:
        self._directory = str(directory)
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def read(self, name: str) -> bytes:
        fd = self._fds.get(name)
        if fd is None:
            with self._lock:
                fd = self._fds.get(name)
                if fd is None:
                    path = os.path.join(self._directory, name)
                    fd = self._fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, READ_AT_ONCE, 0)
        except OSError:
            self._forget(name, fd)
            raise
        if len(data) < READ_AT_ONCE:
            return data
        return Path(self._directory, name).read_bytes()

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def __del__(self) -> None:  # a reader dropped without close() leaks no descriptor
        self.close()

    def _forget(self, name: str, fd: int) -> None:
        with self._lock:
            if self._fds.get(name) == fd:
                del self._fds[name]
                os.close(fd)


class ProcessRSS:
    """A process's resident set size (default: this one's), from ``/proc/<pid>/statm`` kept
    open (the descriptor stays with that process, whatever reuses its pid later); where
    there is no ``/proc`` (not Linux), from psutil. Raises OSError once the process is
    gone."""

    def __init__(self, pid: int | str = "self") -> None:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._proc: KeptOpen | None = None
        self._psutil = None
        if os.path.exists("/proc/self/statm"):  # opened at the first reading
            self._proc = KeptOpen(f"/proc/{pid}")
        else:
            import psutil

            self._psutil = psutil.Process(None if pid == "self" else int(pid))

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()

    def __call__(self) -> int:
        if self._proc is not None:
            # statm: size resident shared text lib data dt, in pages
            return int(self._proc.read("statm").split()[1]) * self._page
        assert self._psutil is not None
        return int(self._psutil.memory_info().rss)
