"""The dashboard and /metrics behind the pool's token, over real HTTP on loopback."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from dashboard_fakes import ChangingPool
from dashboard_server import METRICS_TOKEN, TOKEN, Served, serve
from memkube.security import SESSION_COOKIE, Auth, session_value
from prometheus_client.parser import text_string_to_metric_families


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keep cookies for a bare IP address


async def test_everything_but_health_and_login_needs_a_credential(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/dashboard/api/pool", "/dashboard/static/dashboard.js", "/metrics",
                     "/api/v1/pool"):
            async with http.get(served.url + path, allow_redirects=False) as r:
                assert r.status == 401, path
        async with http.get(served.url + "/health") as r:
            assert r.status == 200
        async with http.get(served.url + "/dashboard/login") as r:
            assert r.status == 200
            assert 'name="token"' in await r.text()


async def test_a_browser_without_session_is_sent_to_the_login_form(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/dashboard/", "/dashboard"):
            async with http.get(served.url + path, allow_redirects=False) as r:
                assert r.status == 303
                assert r.headers["Location"] == "/dashboard/login"


async def test_login_sets_a_strict_session_cookie_that_opens_the_dashboard(served: Served) -> None:
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(served.url + "/dashboard/login", data={"token": TOKEN},
                             allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/dashboard/"
            header = r.headers["Set-Cookie"]
        assert f"{SESSION_COOKIE}={session_value(TOKEN)}" in header
        assert "HttpOnly" in header
        assert "SameSite=Strict" in header
        assert TOKEN not in header

        async with http.get(served.url + "/dashboard/") as r:
            assert r.status == 200
            assert "Content-Security-Policy" in r.headers
            assert 'id="workers"' in await r.text()
        async with http.get(served.url + "/dashboard/api/pool") as r:
            assert r.status == 200
            view = await r.json()
        assert [w["name"] for w in view["workers"]] == ["worker-a", "worker-b", "worker-c"]
        async with http.get(served.url + "/dashboard/login", allow_redirects=False) as r:
            assert r.status == 303  # already logged in

        async with http.post(served.url + "/dashboard/logout", allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(served.url + "/dashboard/api/pool") as r:
            assert r.status == 401


async def test_wrong_token_gets_the_form_again_and_no_cookie(served: Served) -> None:
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(served.url + "/dashboard/login", data={"token": "guess"},
                             allow_redirects=False) as r:
            assert r.status == 401
            assert "not this pool" in await r.text()
            assert "Set-Cookie" not in r.headers
        async with http.get(served.url + "/dashboard/api/pool") as r:
            assert r.status == 401


async def test_a_forged_cookie_is_refused(served: Served) -> None:
    cookies = {SESSION_COOKIE: session_value("some-other-pool")}
    async with aiohttp.ClientSession(cookies=cookies) as http, \
            http.get(served.url + "/dashboard/api/pool") as r:
        assert r.status == 401


async def test_bearer_token_reads_the_feed_without_a_browser(served: Served) -> None:
    async with aiohttp.ClientSession(headers=served.auth.headers()) as http, \
            http.get(served.url + "/dashboard/api/pool") as r:
        assert r.status == 200


async def test_metrics_token_reads_only_metrics(served: Served) -> None:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(served.url + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            names = {f.name for f in text_string_to_metric_families(await r.text())}
        assert "memkube_worker_memory_bytes" in names
        for path in ("/dashboard/", "/dashboard/api/pool", "/api/v1/pool"):
            async with http.get(served.url + path, allow_redirects=False) as r:
                assert r.status in (303, 401), path
                assert r.status != 200


async def test_token_never_appears_in_a_logged_line(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.get(served.url + "/dashboard/") as r:  # -> login form
            assert r.url.path == "/dashboard/login"
        async with http.post(served.url + "/dashboard/login", data={"token": TOKEN}) as r:
            assert r.status == 200 and r.url.path == "/dashboard/"
        async with http.get(served.url + "/dashboard/api/pool") as r:
            assert r.status == 200
        async with http.post(served.url + "/dashboard/login", data={"token": TOKEN + "x"}) as r:
            assert r.status == 401
    async with aiohttp.ClientSession(headers=served.auth.headers()) as http, \
            http.get(served.url + "/metrics") as r:
        assert r.status == 200

    access = [rec.getMessage() for rec in caplog.records if rec.name == "aiohttp.access"]
    assert any("POST /dashboard/login" in line for line in access)  # the log did capture URLs
    for record in caplog.records:
        message = record.getMessage()
        assert TOKEN not in message, message
        assert session_value(TOKEN) not in message, message


async def test_token_in_a_query_string_is_not_accepted(served: Served) -> None:
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(served.url + f"/dashboard/login?token={TOKEN}",
                             allow_redirects=False) as r:
            assert r.status == 401
        async with http.get(served.url + f"/dashboard/api/pool?token={TOKEN}") as r:
            assert r.status == 401


async def test_without_a_token_the_dashboard_is_open_and_login_skips_ahead() -> None:
    async with serve(ChangingPool(["w"]), auth=Auth(token=None)) as open_pool, \
            aiohttp.ClientSession() as http:
        async with http.get(open_pool.url + "/dashboard/login", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/dashboard/"
        async with http.get(open_pool.url + "/dashboard/api/pool") as r:
            assert r.status == 200
            assert [w["name"] for w in (await r.json())["workers"]] == ["w"]


async def test_pages_carry_a_strict_content_security_policy(served: Served) -> None:
    async with aiohttp.ClientSession(headers=served.auth.headers()) as http:
        async with http.get(served.url + "/dashboard/") as r:
            policy = r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(served.url + "/dashboard/login") as r:
            login_policy = r.headers["Content-Security-Policy"]
        async with http.get(served.url + "/dashboard/static/other.js") as r:
            assert r.status == 404
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "style-src 'sha256-" in login_policy and "unsafe-inline" not in login_policy
