"""The ``pool`` fixture: an in-process pool (see ``tests/support/inprocess_pool.py``).

Override its shape per test with
``@pytest.mark.parametrize("pool", [{"workers": 3, ...}], indirect=True)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from inprocess_pool import Pool, inprocess_pool


@pytest.fixture
async def pool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pool]:
    async with inprocess_pool(tmp_path, **getattr(request, "param", {})) as p:
        yield p
