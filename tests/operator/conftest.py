"""Fixtures for the operator tier.

Helpers live next to this file in uniquely named modules (opcases, opharness); the folder is
put on sys.path here so they import by name under any ``--import-mode``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from collections.abc import AsyncIterator
from typing import Any

import pytest
from localkube import ControlPlane, Kube
from memkube_operator.reconcile import Reconciler
from opcases import example_body
from opharness import (
    ClusterApi,
    FakeScheduler,
    operator_config,
    pool_token,
    running_operator,
)


@pytest.fixture
def example() -> dict[str, Any]:
    """examples/workerpool.yaml as the API server would hand it over."""
    return example_body()


@pytest.fixture
def api(control_plane: ControlPlane, kube: Kube, workerpool_crd: str, namespace: str) -> ClusterApi:
    """The session's real API server (WorkerPool CRD established), in a fresh namespace."""
    return ClusterApi(kube, control_plane, namespace)


@pytest.fixture
async def scheduler(api: ClusterApi) -> AsyncIterator[FakeScheduler]:
    """The fake scheduler of the pool named ``demo``."""
    fake = FakeScheduler(api, "demo", lambda: pool_token(api, "demo"))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def operator(api: ClusterApi, scheduler: FakeScheduler) -> AsyncIterator[Reconciler]:
    """The operator running in-process, every pool pointed at the fake scheduler."""
    config = operator_config(lambda ns, svc, port: scheduler.url)
    async with running_operator(api, config) as reconciler:
        yield reconciler
