"""Fixtures of the memory tier: child cgroups, small tmpfs mounts, subprocess helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from memkube.memory.child import ChildCgroup, child_cgroup_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("worker_image", "operator"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = child_cgroup_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a writable memory cgroup: {reason}")
    for item in items:
        if "cgroup" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, to fill the disk for real; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def python_env() -> dict[str, str]:
    """Environment for a subprocess that imports memkube from this tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHONPATH
    for name in list(env):
        if name.startswith("MEMKUBE_"):
            del env[name]
    return env


class PythonRunner:
    """Runs ``python -c code`` with memkube importable, optionally inside a child cgroup."""

    def __call__(
        self, code: str, *, cgroup: ChildCgroup | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=cgroup.enter_in_child if cgroup is not None else None,
        )


@pytest.fixture
def run_python() -> PythonRunner:
    return PythonRunner()


@pytest.fixture
def memkube_env() -> dict[str, str]:
    """Environment for a subprocess that imports memkube from this tree."""
    return python_env()
