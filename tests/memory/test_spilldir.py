"""Spill directories: locked while in use, removed when their worker died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from memkube.memory.spilldir import PREFIX, SpillDirectory, remove_stale


def test_directory_is_locked_named_and_removed(tmp_path: Path) -> None:
    spill = SpillDirectory(tmp_path / "parent")
    assert spill.path.name.startswith(PREFIX) and (spill.path / ".lock").exists()
    (spill.path / "000001.spill").write_bytes(b"x")
    assert remove_stale(tmp_path / "parent") == 0  # we hold its lock: alive
    spill.remove()
    spill.remove()
    assert list((tmp_path / "parent").iterdir()) == []


def test_directories_of_killed_workers_are_removed_by_the_next(
    tmp_path: Path, memkube_env: dict[str, str]
) -> None:
    code = (
        "import sys, time\n"
        "from memkube.memory.spilldir import SpillDirectory\n"
        f"d = SpillDirectory({str(tmp_path)!r})\n"
        "(d.path / 'data.spill').write_bytes(b'x' * 1000)\n"
        "print(d.path, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=memkube_env
    )
    assert proc.stdout is not None
    dead_path = Path(proc.stdout.readline().strip())
    live = SpillDirectory(tmp_path)  # the other worker is alive: its directory stays
    assert dead_path.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert dead_path.exists()  # nobody cleaned up after the kill...
    restarted = SpillDirectory(tmp_path)  # ... until the next worker starts
    assert not dead_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.path.name, restarted.path.name]
    )
    live.remove()
    restarted.remove()


def test_foreign_directories_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / f"{PREFIX}not-ours").mkdir()  # no lock file: not made by a worker
    (tmp_path / "unrelated").mkdir()
    assert remove_stale(tmp_path) == 0
    assert len(list(tmp_path.iterdir())) == 2


def test_a_file_deleted_by_another_thread_meanwhile_does_not_stop_removal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spill = SpillDirectory(tmp_path)
    for i in range(3):
        (spill.path / f"{i:012d}.spill").write_bytes(b"x")
    real_unlink = os.unlink

    def raced(path: str, *, dir_fd: int | None = None) -> None:
        real_unlink(path, dir_fd=dir_fd)  # a free job got there first...
        if str(path).endswith(".spill"):
            raise FileNotFoundError(2, "No such file or directory", path)  # ...so rmtree's fails

    monkeypatch.setattr(os, "unlink", raced)
    spill.remove()
    assert list(tmp_path.iterdir()) == []
