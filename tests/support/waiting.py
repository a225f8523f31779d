"""Polling helpers for figures that arrive with heartbeats (no event exists to await)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0,
               interval: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def spill_files(root: Path) -> list[Path]:
    """Spilled values under ``root``: every file but each spill directory's ``.lock``."""
    return [p for p in root.rglob("*") if p.is_file() and p.name != ".lock"]
