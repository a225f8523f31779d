"""Fixtures for the operator tier (helpers live in opcases.py, importable by name)."""

from __future__ import annotations

from typing import Any

import pytest

from opcases import example_body


@pytest.fixture
def example() -> dict[str, Any]:
    """examples/workerpool.yaml as the API server would hand it over."""
    return example_body()
