"""The dashboard, /metrics, the snapshot seam and the progress bar against a real local pool:
a scheduler and two worker processes with 256 MiB each, filled by a client until they spill,
watched in headless Chromium."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import aiohttp
import memkube
import pytest
from dashboard_browser import CHROMIUM, Page, PageTimeout, chromium_page
from memkube.dashboard.snapshot import (
    THRESHOLD_NAMES,
    EventKind,
    MemoryFigures,
    PoolEvent,
    PoolSnapshot,
    WorkerInfo,
    WorkerStatus,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MiB = 2**20
CHUNK = 16 * MiB


def _chunk_maker() -> Any:
    # A nested function, so cloudpickle ships it by value (workers cannot import this module).
    def make_chunk(i: int) -> bytes:
        import os

        # Random bytes: they occupy RSS for real and do not shrink when compressed on disk,
        # so "spilled" (bytes on disk) adds up to what left memory.
        return os.urandom(16 * 2**20)

    return make_chunk


make_chunk = _chunk_maker()


def shown_total(part: str) -> str:
    """JS: the bytes of ``part`` summed over every worker's bar."""
    return (f"[...document.querySelectorAll('tr.worker [data-part=\"{part}\"]')]"
            ".reduce((sum, el) => sum + Number(el.dataset.bytes), 0)")


@pytest.fixture
async def pool() -> AsyncIterator[tuple[memkube.LocalCluster, memkube.Client]]:
    cluster = await asyncio.to_thread(memkube.LocalCluster, n_workers=2, memory_limit="256MiB")
    try:
        client = await asyncio.to_thread(memkube.Client, cluster)
        try:
            yield cluster, client
        finally:
            await asyncio.to_thread(client.close)
    finally:
        await asyncio.to_thread(cluster.close)


async def log_in(page: Page, link: str, token: str) -> None:
    await page.goto(link)
    assert await page.evaluate("location.pathname") == "/dashboard/login"
    loaded = page.expect("Page.loadEventFired")
    await page.evaluate(f"document.getElementById('token').value = {json.dumps(token)};"
                        "document.querySelector('form').submit()")
    await loaded
    assert await page.evaluate("location.pathname") == "/dashboard/"


@needs_chromium
async def test_dashboard_follows_a_live_pool_as_it_fills_and_spills(
        pool: tuple[memkube.LocalCluster, memkube.Client], caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    cluster, client = pool
    caplog.set_level(logging.DEBUG)
    async with chromium_page() as page:
        try:
            await _fill_and_spill(page, cluster, client)
        finally:
            # Kept also when an assertion fails: it shows what the page showed.
            await page.screenshot(ARTIFACTS / "dashboard-live-pool.png")
        assert page.console_errors == []
        origin = cluster.dashboard_link.removesuffix("/dashboard/")
        assert all(url.startswith((origin, "data:")) for url in page.requested), page.requested
    # Neither the scheduler (in this process) nor the workers (child processes) logged the token.
    out, err = capfd.readouterr()
    for text in (*(r.getMessage() for r in caplog.records), out, err):
        assert cluster.token not in text


async def _fill_and_spill(page: Page, cluster: memkube.LocalCluster,
                          client: memkube.Client) -> None:
    await log_in(page, cluster.dashboard_link, cluster.token)
    await page.wait_for("document.querySelectorAll('tr.worker').length === 2", timeout=20)
    names = await page.evaluate(
        "[...document.querySelectorAll('tr.worker')].map((r) => r.dataset.worker)")
    assert sorted(names) == sorted(cluster.workers)

    # 8 x 16 MiB held by the client: well under the 60% target of 2 x 256 MiB.
    first = await asyncio.to_thread(client.map, make_chunk, range(8))
    await asyncio.to_thread(client.gather, first[:1])
    await page.wait_for(f"{shown_total('managed')} + {shown_total('spilled')} >= {8 * CHUNK}",
                        timeout=20)

    # 16 more: past the target, so the workers spill least-recently-used values to disk.
    # A rate shows only while the counters move, so watch for it from before the spilling.
    spill_rate_shown = asyncio.create_task(page.wait_for(
        "!document.getElementById('total-rates').textContent.startsWith('spill –')", timeout=40))
    second = await asyncio.to_thread(client.map, make_chunk, range(100, 116))
    await asyncio.to_thread(client.gather, second[:1])
    await page.wait_for(f"{shown_total('spilled')} > 0", timeout=30)
    await page.wait_for(
        f"{shown_total('managed')} + {shown_total('spilled')} >= {24 * CHUNK}", timeout=30)
    await spill_rate_shown

    # Computing on every chunk loads the spilled ones back from disk: unspill shows. (Which
    # chunks are on disk depends on how the two workers split them, so all are computed on;
    # gathering would not do: spilled data is served without unpickling.)
    unspill_rate_shown = asyncio.create_task(page.wait_for(
        "!document.getElementById('total-rates').textContent.endsWith('unspill –')", timeout=40))
    lengths = await asyncio.to_thread(client.map, len, first + second)
    assert await asyncio.to_thread(client.gather, lengths) == [CHUNK] * 24
    await unspill_rate_shown

    # The bars show exactly the scheduler's figures. Workers may still be spilling, so if a
    # heartbeat moves the figures before the page catches up, compare with a fresher snapshot.
    origin = cluster.dashboard_link.removesuffix("/dashboard/")
    headers = {"Authorization": f"Bearer {cluster.token}"}
    for attempt in range(5):
        async with aiohttp.ClientSession(headers=headers) as http, \
                http.get(origin + "/api/v1/pool") as r:
            snap = await r.json()
        matches = " && ".join(
            f"document.querySelector('tr[data-worker=\"{w['name']}\"] "
            f"[data-part=\"{part}\"]').dataset.bytes === '{w['memory'][part]}'"
            for w in snap["workers"] for part in ("managed", "spilled"))
        try:
            await page.wait_for(matches, timeout=4)
            break
        except PageTimeout:
            if attempt == 4:
                raise
    await page.evaluate("document.querySelector('tr.worker').click()")
    why = await page.wait_for("document.querySelector('tr.detail .why')?.textContent")
    assert why


async def test_one_scheduler_scrape_shows_every_worker(
        pool: tuple[memkube.LocalCluster, memkube.Client]) -> None:
    cluster, client = pool
    held = await asyncio.to_thread(client.map, make_chunk, range(4))
    await asyncio.to_thread(client.gather, held)
    origin = cluster.dashboard_link.removesuffix("/dashboard/")

    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(origin + "/api/v1/pool") as r:
            snap = await r.json()
        async with http.get(origin + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
    samples = {(s.name, s.labels.get("worker", ""), s.labels.get("type", "")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    assert len(snap["workers"]) == 2
    for w in snap["workers"]:
        assert ("memkube_worker_memory_bytes", w["name"], "managed") in samples
        assert samples[("memkube_worker_memory_limit_bytes", w["name"], "")] == 256 * MiB

    # Each worker's own /metrics has the same families, labelled with its own name.
    w = snap["workers"][0]
    async with aiohttp.ClientSession(headers=headers) as http, \
            http.get(w["address"].replace("tcp://", "http://") + "/metrics") as r:
        assert r.status == 200
        own = [(s.name, s.labels) for f in text_string_to_metric_families(await r.text())
               for s in f.samples]
    assert ("memkube_worker_memory_bytes", {"worker": w["name"], "type": "managed"}) in own
    assert {labels["worker"] for _, labels in own} == {w["name"]}
    workers = [s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "memkube_workers"]
    assert sum(workers) == 2


def _missing(shape: type, value: dict[str, Any]) -> set[str]:
    return set(shape.__required_keys__) - set(value)  # type: ignore[attr-defined]


async def test_the_scheduler_snapshot_has_every_field_the_dashboard_reads(
        pool: tuple[memkube.LocalCluster, memkube.Client]) -> None:
    cluster, _ = pool
    origin = cluster.dashboard_link.removesuffix("/dashboard/")
    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with aiohttp.ClientSession(headers=headers) as http, \
            http.get(origin + "/api/v1/pool") as r:
        snap = await r.json()

    assert _missing(PoolSnapshot, snap) == set()
    assert snap["workers"]
    for w in snap["workers"]:
        assert _missing(WorkerInfo, w) == set()
        assert _missing(MemoryFigures, w["memory"]) == set()
        assert set(w["memory"]["thresholds"]) == set(THRESHOLD_NAMES)
        assert w["status"] in get_args(WorkerStatus)
    for event in snap["events"]:
        assert _missing(PoolEvent, event) == set()
        assert event["kind"] in get_args(EventKind)


async def test_progress_follows_real_futures_to_the_end(
        pool: tuple[memkube.LocalCluster, memkube.Client]) -> None:
    _, client = pool

    def boom(x: int) -> int:
        raise ValueError(x)

    good = await asyncio.to_thread(client.map, make_chunk, range(200, 206))
    bad = await asyncio.to_thread(client.submit, boom, 1)
    out = io.StringIO()
    bar = await asyncio.to_thread(memkube.progress, [*good, bad], file=out, timeout=60)
    assert bar.statuses == {"finished": 6, "error": 1}
    assert "7/7" in out.getvalue()
