"""The dashboard and /metrics behind the pool's token, over real HTTP on loopback."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from dashboard_fakes import ChangingPool
from dashboard_server import METRICS_TOKEN, TOKEN, Served, serve
from memkube.dashboard.sessions import Sessions
from memkube.security import SESSION_COOKIE, Auth
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL


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
        assert header.startswith(f"{SESSION_COOKIE}=")
        assert "HttpOnly" in header
        assert "Max-Age=" in header
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
    cookies = {SESSION_COOKIE: "a" * 43}
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
        cookies = [c.value for c in http.cookie_jar]
        assert cookies
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
        for cookie in cookies:
            assert cookie not in message, message


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


async def _login(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(url + "/dashboard/login", data={"token": TOKEN},
                         allow_redirects=False) as r:
        assert r.status == 303
    return http.cookie_jar.filter_cookies(URL(url + "/dashboard/"))[SESSION_COOKIE].value


async def test_sessions_are_random_and_never_derived_from_the_token(served: Served) -> None:
    async with aiohttp.ClientSession(cookie_jar=jar()) as a, \
            aiohttp.ClientSession(cookie_jar=jar()) as b:
        first, second = await _login(a, served.url), await _login(b, served.url)
    assert first != second
    assert TOKEN not in first and len(first) >= 32


async def test_logout_revokes_the_session_for_everyone_holding_it(served: Served) -> None:
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        cookie = await _login(http, served.url)
        async with http.post(served.url + "/dashboard/logout", allow_redirects=False) as r:
            assert r.status == 303
    # a copy of the cookie taken before the logout no longer works
    async with aiohttp.ClientSession(cookies={SESSION_COOKIE: cookie}) as replay, \
            replay.get(served.url + "/dashboard/api/pool") as r:
        assert r.status == 401


async def test_sessions_expire() -> None:
    now = [1000.0]
    sessions = Sessions(ttl=60.0, clock=lambda: now[0])
    async with serve(ChangingPool(["w"]), sessions=sessions) as server, \
            aiohttp.ClientSession(cookie_jar=jar()) as http:
        await _login(http, server.url)
        async with http.get(server.url + "/dashboard/api/pool") as r:
            assert r.status == 200
        now[0] += 61.0
        async with http.get(server.url + "/dashboard/api/pool") as r:
            assert r.status == 401
    assert len(sessions) == 0  # expired sessions are dropped, not kept forever


def test_the_session_store_is_bounded() -> None:
    sessions = Sessions(ttl=3600.0, max_sessions=3)
    values = [sessions.create() for _ in range(5)]
    assert len(sessions) == 3
    assert not sessions.valid(values[0]) and sessions.valid(values[-1])
    assert not sessions.valid("caf\u00e9") and not sessions.valid("")


async def test_the_cookie_opens_only_the_dashboards_own_reads(served: Served) -> None:
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        await _login(http, served.url)
        for path in ("/dashboard/", "/dashboard/api/pool", "/dashboard/static/dashboard.js"):
            async with http.get(served.url + path, allow_redirects=False) as r:
                assert r.status == 200, path
        for path in ("/api/v1/pool", "/metrics"):
            async with http.get(served.url + path, allow_redirects=False) as r:
                assert r.status == 401, path


async def test_a_foreign_origin_cannot_change_state(served: Served) -> None:
    evil = {"Origin": "https://evil.example"}
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(served.url + "/dashboard/login", data={"token": TOKEN},
                             headers=evil, allow_redirects=False) as r:
            assert r.status == 403
            assert "Set-Cookie" not in r.headers
        cookie = await _login(http, served.url)
        async with http.post(served.url + "/dashboard/logout", headers=evil,
                             allow_redirects=False) as r:
            assert r.status == 403
        async with http.get(served.url + "/dashboard/api/pool") as r:
            assert r.status == 200  # not logged out by the foreign page
        async with http.post(served.url + "/dashboard/logout",
                             headers={"Origin": served.url}, allow_redirects=False) as r:
            assert r.status == 303  # the dashboard's own page may
    async with aiohttp.ClientSession(cookies={SESSION_COOKIE: cookie}) as replay, \
            replay.get(served.url + "/dashboard/api/pool") as r:
        assert r.status == 401
    async with aiohttp.ClientSession(headers={**served.auth.headers(), **evil}) as http, \
            http.post(served.url + "/dashboard/logout", allow_redirects=False) as r:
        assert r.status == 403  # a bearer token does not make a foreign origin acceptable
