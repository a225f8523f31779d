"""The dashboard in headless Chromium against a real aiohttp server whose pool changes.

Logs in through the form like a person, then asserts on what the page shows: a bar per
worker whose parts match the snapshot, values that follow the snapshot as it changes, the
"why" panel of a clicked worker, no script or CSP error, and no request leaving loopback.
A screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dashboard_browser import CHROMIUM, chromium_page
from dashboard_server import TOKEN, Served

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
        served.pool.step()
        served.pool.step()
        expected = served.pool()["workers"][0]["memory"]["managed"]
        assert expected != before
        await page.wait_for(f"{managed_of('worker-a')} === '{expected}'")
        # Counters grew between two refreshes, so a spill rate is shown.
        await page.wait_for("document.querySelector('tr[data-worker=\"worker-a\"] "
                            "[data-field=\"spill_rate\"]').textContent.endsWith('/s')")
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

        await page.screenshot(ARTIFACTS / "dashboard-fake-pool.png")
        assert page.console_errors == []
        assert all(url.startswith((served.url, "data:")) for url in page.requested), page.requested
