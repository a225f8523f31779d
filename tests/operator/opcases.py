"""Shared helpers for the operator tier: WorkerPool bodies."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workerpool.yaml"


def pool_body(name: str = "demo", namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    """A WorkerPool body as the API server would hand it over (before defaults)."""
    return {
        "apiVersion": "memkube.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 1},
        "spec": copy.deepcopy(spec),
    }


def example_body() -> dict[str, Any]:
    """examples/workerpool.yaml, with the identity the API server would add."""
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ns", uid="uid-1", generation=1)
    return body
