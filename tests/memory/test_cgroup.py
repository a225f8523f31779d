"""Finding and reading a process's own memory cgroup: synthetic tables and fake trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from memkube.memory.cgroup import (
    CgroupMemory,
    own_memory_cgroup,
    parse_mountinfo,
    resolve_memory_cgroup,
)

MOUNTINFO_V1 = """\
22 1 0:21 / /sys rw - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
CGROUP_V1 = "9:name=systemd:/\n4:memory:/kubepods/pod1/ctr\n1:cpu:/\n0::/\n"

MOUNTINFO_V2 = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
CGROUP_V2 = "0::/kubepods.slice/pod2.slice/ctr.scope\n"


def test_v1_memory_hierarchy_wins_and_nests() -> None:
    mounts = parse_mountinfo(MOUNTINFO_V1)
    assert [m.fstype for m in mounts] == ["cgroup", "cgroup", "cgroup2"]
    assert resolve_memory_cgroup(CGROUP_V1, mounts) == (
        1,
        Path("/sys/fs/cgroup/memory/kubepods/pod1/ctr"),
    )


def test_v1_mount_of_a_subtree_as_in_a_container() -> None:
    # a container sees only its own cgroup, mounted at the usual place
    mountinfo = "35 31 0:32 /kubepods/pod1/ctr /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
    assert resolve_memory_cgroup(CGROUP_V1, parse_mountinfo(mountinfo)) == (
        1,
        Path("/sys/fs/cgroup/memory"),
    )
    other = "35 31 0:32 /elsewhere /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
    assert resolve_memory_cgroup(CGROUP_V1, parse_mountinfo(other)) is None


def test_v2_needs_a_memory_max_file(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    leaf = root / "kubepods.slice/pod2.slice/ctr.scope"
    leaf.mkdir(parents=True)
    mountinfo = MOUNTINFO_V2.replace("/sys/fs/cgroup", str(root))
    mounts = parse_mountinfo(mountinfo)
    assert resolve_memory_cgroup(CGROUP_V2, mounts) is None
    (leaf / "memory.max").write_text("max\n")
    assert resolve_memory_cgroup(CGROUP_V2, mounts) == (2, leaf)


def test_mountinfo_escapes_and_junk() -> None:
    text = "1 2 0:3 / /a\\040b rw - cgroup2 cgroup2 rw\nnot a mountinfo line\n"
    (mount,) = parse_mountinfo(text)
    assert mount.mount_point == "/a b"


def fake_v2_tree(tmp_path: Path) -> Path:
    """root (no memory.max) > pod (2 GiB) > container (max), with usage and events."""
    pod = tmp_path / "pod"
    ctr = pod / "ctr"
    ctr.mkdir(parents=True)
    (pod / "memory.max").write_text(f"{2 << 30}\n")
    (ctr / "memory.max").write_text("max\n")
    (ctr / "memory.current").write_text("500000000\n")
    (ctr / "memory.peak").write_text("600000000\n")
    (ctr / "memory.stat").write_text("anon 300000000\nfile 200000000\ninactive_file 150000000\n")
    (ctr / "memory.events").write_text("low 0\nhigh 3\nmax 1\noom 1\noom_kill 2\n")
    (ctr / "cgroup.procs").write_text("12\n34\n")
    return ctr


def test_v2_reading_takes_the_smallest_limit_up_the_tree(tmp_path: Path) -> None:
    cg = CgroupMemory(2, fake_v2_tree(tmp_path))
    assert cg.limit() == 2 << 30
    assert cg.own_limit() is None
    assert cg.usage() == 500_000_000
    assert cg.working_set() == 350_000_000
    assert cg.max_usage() == 600_000_000
    assert cg.oom_kills() == 2
    assert cg.pids() == [12, 34]


def test_v1_reading_uses_the_hierarchical_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "memory.stat").write_text(
        "cache 100\nhierarchical_memory_limit 734003200\ntotal_inactive_file 4096\n"
    )
    (tmp_path / "memory.usage_in_bytes").write_text("10000\n")
    (tmp_path / "memory.max_usage_in_bytes").write_text("20000\n")
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    cg = CgroupMemory(1, tmp_path)
    assert cg.limit() == 734003200
    assert cg.own_limit() is None
    assert cg.working_set() == 10000 - 4096
    assert cg.max_usage() == 20000 and cg.oom_kills() == 3


def test_this_process_has_a_readable_cgroup_or_none() -> None:
    cg = own_memory_cgroup()
    if cg is None:
        pytest.skip("this machine mounts no memory cgroup")
    assert cg.usage() > 0
    limit = cg.limit()
    assert limit is None or limit > cg.working_set()
    assert cg.oom_kills() >= 0


def test_kept_open_files_read_afresh_and_close_their_descriptors(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from memkube.memory.kernelfiles import KeptOpen, ProcessRSS

    (tmp_path / "memory.current").write_text("100\n")
    files = KeptOpen(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    assert files.read("memory.current") == b"100\n"
    (tmp_path / "memory.current").write_text("2000\n")  # rewritten in place, as the kernel does
    assert files.read("memory.current") == b"2000\n"
    assert len(os.listdir("/proc/self/fd")) == before + 1  # one descriptor, kept
    files.close()
    assert len(os.listdir("/proc/self/fd")) == before
    # a worker's RSS, read by its guard: a reading once the process is gone raises
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"up\n"
    rss = ProcessRSS(child.pid)
    assert rss() > 1 << 20  # an interpreter's pages, not this process's
    child.communicate(b"")
    with pytest.raises(OSError):
        rss()
    rss.close()
