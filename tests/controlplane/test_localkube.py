"""The control plane tooling itself: `python -m localkube up/down` (what `make cluster` and
`make cluster-down` run) leaves nothing behind, and a machine without Go skips — but CI
must not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from localkube import Unavailable, ensure, required
from localkube.binaries import ROOT, expected

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "support")}


def localkube(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localkube", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_up_then_down_leaves_nothing_running(tmp_path: Path, k8s_binaries: object) -> None:
    directory = tmp_path / "cluster"
    up = localkube("up", "--dir", str(directory))
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={directory / 'kubeconfig'}" in up.stdout
    state = json.loads((directory / "state.json").read_text())
    pids = [c["pid"] for c in state["components"]]
    assert [c["name"] for c in state["components"]] == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    assert all(alive(p) for p in pids)
    status = localkube("status", "--dir", str(directory))
    assert status.returncode == 0 and status.stdout.count("healthy") == 4, status.stdout
    again = localkube("up", "--dir", str(directory))  # already healthy: a no-op
    assert again.returncode == 0 and "already running" in again.stdout
    kubectl = subprocess.run(
        [
            str(ensure(build=False).path("kubectl")),
            "--kubeconfig",
            str(directory / "kubeconfig"),
            "get",
            "crd",
            "workerpools.memkube.dev",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        kubectl.stdout.strip()
        == "customresourcedefinition.apiextensions.k8s.io/workerpools.memkube.dev"
    )
    down = localkube("down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert not any(alive(p) for p in pids)
    assert not (directory / "state.json").exists()
    assert localkube("status", "--dir", str(directory)).returncode == 1


def test_without_go_the_binaries_are_unavailable_not_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMKUBE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("GO", str(tmp_path / "no-such-go"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(Unavailable, match="no Go toolchain"):
        ensure()
    assert not expected().k8s_bin.exists()


def test_ci_turns_a_skip_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMKUBE_REQUIRE_K8S", raising=False)
    monkeypatch.setenv("CI", "true")
    assert required()
    monkeypatch.setenv("CI", "false")
    assert not required()
    monkeypatch.setenv("MEMKUBE_REQUIRE_K8S", "1")
    assert required()
