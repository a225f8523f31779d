"""`memkube operator render` prints what the operator would create, valid for Kubernetes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import validate
from memkube_operator.cli import main, render_file
from memkube_operator.crd import load_crd
from opcases import EXAMPLE

ROOT = Path(__file__).resolve().parents[2]


def test_render_prints_every_child_of_the_example() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert render_file(str(EXAMPLE), "default", "img:1", out, err) == 0
    objects = list(yaml.safe_load_all(out.getvalue()))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["Secret", "Pod", "Service", "Pod", "Pod", "Pod", "Pod"]
    for obj in objects:
        validate(obj, "1.28.0", strict=True)
        validate(obj, "1.33.0", strict=True)
    assert out.getvalue().startswith(
        "# WorkerPool etl: memoryLimit=8Gi, memoryOverhead=1Gi, podMemory=9Gi"
    )
    assert {c["image"] for o in objects if o["kind"] == "Pod" for c in o["spec"]["containers"]} == {
        "img:1"
    }


def test_render_applies_crd_defaults(tmp_path: Path) -> None:
    minimal = tmp_path / "wp.yaml"
    minimal.write_text(
        "apiVersion: memkube.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: tiny}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert render_file(str(minimal), "team", "img:1", out, err) == 0
    objects = list(yaml.safe_load_all(out.getvalue().split("\n", 1)[1]))
    workers = [o for o in objects if o.get("metadata", {}).get("generateName") == "tiny-worker-"]
    assert len(workers) == 2  # default replicas
    command = workers[0]["spec"]["containers"][0]["command"]
    assert command[command.index("--memory-limit") + 1] == "2Gi"
    assert {o["metadata"]["namespace"] for o in objects} == {"team"}


def test_render_names_the_invalid_field(tmp_path: Path) -> None:
    bad = tmp_path / "wp.yaml"
    bad.write_text(
        "apiVersion: memkube.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: bad}\n"
        "spec: {worker: {thresholds: {target: 0.9}}}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert render_file(str(bad), "default", "img", out, err) == 2
    assert "spec.worker.thresholds.spill" in err.getvalue()
    assert out.getvalue() == ""


def test_crd_subcommand_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == load_crd()


def test_render_runs_as_a_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memkube_operator.cli", "render", "-f", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONPATH": f"{ROOT / 'worker_image'}:{ROOT / 'operator'}", "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.count("kind: Pod") == 5
