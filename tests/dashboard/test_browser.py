"""The dashboard in headless Chromium against a real aiohttp server whose pool changes.

Logs in through the form like a person, then asserts on what the page shows: a bar per
worker whose parts match the snapshot, values that follow the snapshot as it changes, the
"why" panel of a clicked worker, no script or CSP error, and no request leaving loopback.
A screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from dashboard_browser import CHROMIUM, chromium_page
from dashboard_fakes import GiB, MiB, figures, snapshot, worker
from dashboard_server import TOKEN, Served, serve

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install chromium; .ci/run installs it)")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def managed_of(worker: str) -> str:
    return (f'document.querySelector(\'tr[data-worker="{worker}"] [data-part="managed"]\')'
            "?.dataset.bytes")


async def test_dashboard_shows_live_memory_bars_per_worker(served: Served) -> None:
    async with chromium_page() as page:
        await page.goto(served.url + "/dashboard/")
        assert await page.evaluate("location.pathname") == "/dashboard/login"

        loaded = page.expect("Page.loadEventFired")
        await page.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)};"
                            "document.querySelector('form').submit()")
        await loaded
        assert await page.evaluate("location.pathname") == "/dashboard/"

        await page.wait_for("document.querySelectorAll('tr.worker').length === 3")
        snap = served.pool()
        for w in snap["workers"]:
            name = w["name"]
            shown = await page.evaluate(f"""(() => {{
                const row = document.querySelector('tr[data-worker="{name}"]');
                const part = (p) => row.querySelector(`[data-part="${{p}}"]`);
                return {{state: row.dataset.state,
                         managed: Number(part('managed').dataset.bytes),
                         unmanaged: Number(part('unmanaged').dataset.bytes),
                         spilled: Number(part('spilled').dataset.bytes),
                         width: parseFloat(part('managed').style.width),
                         thresholds: [...row.querySelectorAll('[data-threshold]')]
                                       .map((t) => t.dataset.threshold)}};
            }})()""")
            assert shown["managed"] == w["memory"]["managed"]
            assert shown["unmanaged"] == w["memory"]["unmanaged"]
            assert shown["spilled"] == w["memory"]["spilled"]
            assert shown["state"] == w["memory"]["state"]
            assert shown["width"] == pytest.approx(
                100 * w["memory"]["managed"] / w["memory"]["limit"], rel=1e-3)
            assert shown["thresholds"] == ["target", "spill", "pause", "terminate"]
        assert await page.evaluate("document.getElementById('total-workers').textContent") == "3"

        # The pool changes; the page follows within its next refresh.
        before = int(await page.evaluate(managed_of("worker-a")))
        # Counters grow between two refreshes, so a spill rate shows (while they move).
        rate_shown = asyncio.create_task(page.wait_for(
            "document.querySelector('tr[data-worker=\"worker-a\"] "
            "[data-field=\"spill_rate\"]').textContent.endsWith('/s')", timeout=20))
        served.pool.step()
        served.pool.step()
        expected = served.pool()["workers"][0]["memory"]["managed"]
        assert expected != before
        await page.wait_for(f"{managed_of('worker-a')} === '{expected}'")
        await rate_shown
        await page.wait_for("document.querySelectorAll('#events li').length === 2")

        # One click answers "why": the worker's thresholds, explanation and own events.
        await page.evaluate("document.querySelector('tr[data-worker=\"worker-b\"]').click()")
        why = await page.wait_for(
            "document.querySelector('tr[data-detail=\"worker-b\"] .why')?.textContent")
        assert why.startswith("Spilling: process memory")
        await page.evaluate("document.querySelector('tr[data-worker=\"worker-b\"]').click()")
        await page.evaluate("document.querySelector('tr[data-worker=\"worker-a\"]').click()")
        events = await page.wait_for(
            "document.querySelector('tr[data-detail=\"worker-a\"] ol.events')?.textContent")
        assert "pause #1" in events

        # The keyboard opens a worker too: focus its row, press Enter.
        await page.evaluate("document.querySelector('tr[data-worker=\"worker-c\"]').focus()")
        for kind in ("keyDown", "keyUp"):
            await page.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                            windowsVirtualKeyCode=13)
        await page.wait_for("document.querySelector('tr[data-detail=\"worker-c\"]')")
        await page.evaluate("document.querySelector('tr[data-worker=\"worker-a\"]').click()")
        await page.wait_for("document.querySelector('tr[data-detail=\"worker-a\"]')")

        await page.screenshot(ARTIFACTS / "dashboard-fake-pool.png")
        assert page.console_errors == []
        assert all(url.startswith((served.url, "data:")) for url in page.requested), page.requested


async def test_odd_pools_render_without_script_errors() -> None:
    hostile = '<img src=x id=injected onerror="document.title=1">'
    odd = snapshot(
        [worker(hostile, figures(limit=None, managed=5 * MiB, unmanaged=40 * MiB,
                                 thresholds={"target": None, "spill": None, "pause": None,
                                             "terminate": None}), status="retiring"),
         worker("full-disk", figures(limit=GiB, managed=700 * MiB, unmanaged=200 * MiB,
                                     spilled=3 * GiB, state="paused", spill_full=True),
                memory_restarts=4)],
        events=[{"time": time.time() - 30, "kind": "oom-kill", "worker": "full-disk",
                 "message": "exit 137"},
                {"time": time.time() - 20, "kind": "something-new", "worker": hostile,
                 "message": hostile},
                {"time": time.time() - 10, "kind": "worker-retired", "worker": "gone",
                 "message": "scale down"}],
        tasks={}, shortfall=7)
    current = {"snapshot": odd}

    async with serve(lambda: current["snapshot"]) as served, chromium_page() as page:
        await page.goto(served.url + "/dashboard/login")
        loaded = page.expect("Page.loadEventFired")
        await page.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)};"
                            "document.querySelector('form').submit()")
        await loaded
        await page.wait_for("document.querySelectorAll('tr.worker').length === 2")

        assert await page.evaluate("document.getElementById('injected')") is None
        names = await page.evaluate(
            "[...document.querySelectorAll('tr.worker td.name')].map((td) => td.textContent)")
        assert hostile in names
        rows = await page.evaluate("""[...document.querySelectorAll('tr.worker')].map((r) =>
            [r.dataset.state, r.querySelectorAll('[data-threshold]').length,
             r.querySelector('.barlabel').textContent])""")
        # Sorted by name: "<img ..." before "full-disk".
        assert rows[0][0] == "retiring" and rows[0][1] == 0 and "no limit" in rows[0][2]
        assert rows[1][0] == "paused" and rows[1][1] == 4 and "spill disk full" in rows[1][2]
        assert "7 keys short" in await page.evaluate(
            "document.getElementById('replication-sub').textContent")
        badges = await page.evaluate(
            "[...document.querySelectorAll('#events .kind')].map((b) => b.className)")
        assert badges == ["kind retire", "kind other", "kind oom-kill"]  # newest first
        assert "1 OOM kill" in await page.evaluate(
            "document.getElementById('total-oom').textContent")

        current["snapshot"] = snapshot([], tasks={})
        await page.wait_for("!document.getElementById('no-workers').hidden")
        assert await page.evaluate("document.querySelectorAll('tr.worker').length") == 0
        assert page.console_errors == []
