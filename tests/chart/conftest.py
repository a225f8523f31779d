"""Fixtures for the chart tier: the chart rendered once per value set, by Helm itself,
installed into the session's real API server.

Every value set in chartcases.VALID and chartcases.INVALID goes through one child process
(see helmrender.py), so the whole tier pays Helm's start-up once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# pytest runs with --import-mode=importlib: this tier's helper modules sit beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chartcases import CHART, INVALID, NAMESPACE, REFUSED, RELEASE, VALID
from helmrender import render_cases


def _case(values: dict[str, Any]) -> dict[str, Any]:
    return {"release": RELEASE, "namespace": NAMESPACE, "values": values}


@pytest.fixture(scope="session")
def helm_results(control_plane: Any) -> dict[str, Any]:
    """Lint plus every VALID and INVALID value set, installed by Helm into the session's real
    API server (and uninstalled again) in one child process."""
    names = [*VALID, *INVALID, *REFUSED]
    cases = [_case(VALID[n]) for n in VALID] + [_case(INVALID[n][0]) for n in INVALID]
    cases += [_case(REFUSED[n][0]) for n in REFUSED]
    lint, *results = render_cases(CHART, cases, lint=True, plane=control_plane)
    return {"lint": lint["lint"], **dict(zip(names, results, strict=True))}


@pytest.fixture(scope="session")
def rendered(helm_results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Objects per VALID value set (the rendered manifest parsed, empty documents dropped)."""
    out = {}
    for name in VALID:
        result = helm_results[name]
        assert "error" not in result, f"{name}: {result.get('error')}"
        out[name] = [doc for doc in yaml.safe_load_all(result["manifest"]) if doc]
    return out
