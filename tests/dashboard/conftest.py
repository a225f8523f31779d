"""Fixtures for the dashboard tier.

Helpers live next to this file in uniquely named modules (dashboard_fakes, dashboard_server,
dashboard_browser); the folder is put on sys.path here so they import by name under any
``--import-mode``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from collections.abc import AsyncIterator

import pytest
from dashboard_fakes import ChangingPool
from dashboard_server import Served, serve


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """The dashboard of a three-worker pool whose memory grows at each ``pool.step()``."""
    async with serve(ChangingPool(["worker-a", "worker-b", "worker-c"])) as server:
        yield server
