"""Reading this process's own memory cgroup (v1 and v2).

The cgroup is found from ``/proc/<pid>/cgroup`` and the mount table, so a process in a
nested cgroup (a pod inside a node's hierarchy, a test's child cgroup) reads its *own*
limit and usage rather than the root's. The limit is the effective one: the smallest of
the cgroup and its ancestors.

Covers: finding the cgroup, limit, usage, working set (usage minus inactive file cache, what
the kubelet counts), peak usage and OOM-kill count. Not covered: kernel notifications
(``events.py``) and creating cgroups (``child.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .kernelfiles import KeptOpen

# cgroup v1 reports "no limit" as a page-rounded LONG_MAX; anything this big is unlimited.
_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Mount:
    """One line of /proc/<pid>/mountinfo that mounts a cgroup hierarchy."""

    root: str  # the path inside the hierarchy that is mounted (not "/" in a cgroup namespace)
    mount_point: str
    fstype: str  # "cgroup" or "cgroup2"
    options: frozenset[str]  # super options; for v1 they name the controllers


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup mounts in a mountinfo text (see proc(5))."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        after = right.split()
        if len(fields) < 5 or len(after) < 3 or after[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(
            Mount(
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                fstype=after[0],
                options=frozenset(after[2].split(",")),
            )
        )
    return mounts


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    return (
        path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def resolve_memory_cgroup(proc_cgroup: str, mounts: list[Mount]) -> tuple[int, Path] | None:
    """(version, directory) of the memory cgroup named in a /proc/<pid>/cgroup text.

    A v1 memory hierarchy wins over v2, as on hybrid hosts only the v1 one limits memory.
    """
    v2_path = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if "memory" in controllers.split(","):
            for mount in mounts:
                if mount.fstype == "cgroup" and "memory" in mount.options:
                    directory = _join(mount, path)
                    if directory is not None:
                        return 1, directory
        elif hierarchy == "0" and controllers == "":
            v2_path = path
    if v2_path is not None:
        for mount in mounts:
            if mount.fstype == "cgroup2":
                directory = _join(mount, v2_path)
                if directory is not None and (directory / "memory.max").exists():
                    return 2, directory
    return None


def _join(mount: Mount, path: str) -> Path | None:
    """The directory of cgroup ``path`` under ``mount``, or None if it is not visible there."""
    root = mount.root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None  # the mount shows another part of the hierarchy
    relative = path[len(root) :].lstrip("/")
    return Path(mount.mount_point) / relative


def _read_int(path: Path) -> int | None:
    text = path.read_text().strip()
    if text == "max":
        return None
    return int(text)


def _read_keyed(path: Path) -> dict[str, int]:
    """A "key value" per line file such as memory.stat or memory.events."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _keyed_value(data: bytes, key: bytes) -> int | None:
    """The value of ``key`` in a "key value" per line text (memory.stat), or None."""
    at = (b"\n" + data).find(b"\n" + key + b" ")
    if at < 0:
        return None
    start = at + len(key) + 1
    end = data.find(b"\n", start)
    return int(data[start:] if end < 0 else data[start:end])


@dataclass(frozen=True)
class CgroupMemory:
    """The memory controller files of one cgroup directory."""

    version: Literal[1, 2]
    path: Path
    # usage and working set are read for every task admitted: through kept-open files
    _open: KeptOpen = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_open", KeptOpen(self.path))

    def limit(self) -> int | None:
        """The effective limit in bytes (smallest up the tree), or None if unlimited."""
        if self.version == 1:
            stat = _read_keyed(self.path / "memory.stat")
            value = stat.get("hierarchical_memory_limit")
            if value is None:
                value = _read_int(self.path / "memory.limit_in_bytes")
            return None if value is None or value >= _UNLIMITED else value
        best: int | None = None
        directory = self.path
        while (directory / "memory.max").exists():
            value = _read_int(directory / "memory.max")
            if value is not None and (best is None or value < best):
                best = value
            if directory.parent == directory:
                break
            directory = directory.parent
        return best

    def own_limit(self) -> int | None:
        """The limit set on this cgroup alone, ignoring its ancestors."""
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        value = _read_int(self.path / name)
        return None if value is None or value >= _UNLIMITED else value

    def usage(self) -> int:
        """Bytes charged to the cgroup, page cache included."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        text = self._open.read(name).strip()
        return 0 if text == b"max" else int(text)

    def inactive_file(self) -> int:
        """Inactive file cache charged to the cgroup: what reclaim drops first."""
        stat = self._open.read("memory.stat")
        key = b"total_inactive_file" if self.version == 1 else b"inactive_file"
        return _keyed_value(stat, key) or 0

    def working_set(self) -> int:
        """Usage minus inactive file cache: what cannot be dropped cheaply before an OOM kill."""
        return max(0, self.usage() - self.inactive_file())

    def max_usage(self) -> int | None:
        """Peak usage, where the kernel records it (v1 always, v2 from Linux 5.19)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        path = self.path / name
        return _read_int(path) if path.exists() else None

    def oom_kills(self) -> int:
        """How many processes the OOM killer killed in this cgroup."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return _read_keyed(self.path / name).get("oom_kill", 0)

    def pids(self) -> list[int]:
        """The processes in this cgroup (not its children)."""
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]


def own_memory_cgroup(pid: int | str = "self") -> CgroupMemory | None:
    """The memory cgroup of ``pid`` (default: this process), or None if there is none."""
    try:
        proc_cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        mountinfo = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return None
    found = resolve_memory_cgroup(proc_cgroup, parse_mountinfo(mountinfo))
    if found is None:
        return None
    version, directory = found
    if not os.path.isdir(directory):
        return None
    return CgroupMemory(1 if version == 1 else 2, directory)
