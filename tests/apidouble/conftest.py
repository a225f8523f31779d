"""Fixtures for the API double's own tests: a running double, a JSON client, kubectl."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from apidouble import ApiDouble
from apidouble.testing import Http, Kubectl

WIDGETS_CRD = Path(__file__).parent / "widgets-crd.yaml"


@pytest.fixture
async def api() -> AsyncIterator[ApiDouble]:
    async with ApiDouble(bookmark_interval=0.2) as double:
        yield double


@pytest.fixture
async def http(api: ApiDouble) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, api.url)


@pytest.fixture
def widgets_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(WIDGETS_CRD.read_text())
    return crd


@pytest.fixture
async def widgets(api: ApiDouble, widgets_crd: dict[str, Any]) -> str:
    """Register the test CRD; returns the namespaced collection path of its widgets."""
    api.create_object(widgets_crd)
    return "/apis/example.test/v1/namespaces/default/widgets"


@pytest.fixture
def threaded_api() -> Iterator[ApiDouble]:
    with ApiDouble.run_in_thread() as double:
        yield double


@pytest.fixture
def kubectl(threaded_api: ApiDouble, tmp_path: Path) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on the PATH")
    return Kubectl(threaded_api, tmp_path / "kube-cache")
