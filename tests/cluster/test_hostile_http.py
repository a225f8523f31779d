"""Generated hostile HTTP requests against every route of a live scheduler and worker.

The routes are read from the servers' own routers, so a route added later is attacked too.
Each request is raw bytes (any header value, lying Content-Length, junk bodies, odd paths and
query strings), with no credential, a wrong or non-ASCII one, the metrics token, or the real
token. Whatever arrives: never a 5xx, never a 200 without a credential that opens the route,
no failed handler in the log, and the pool keeps both workers and computes.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from dataclasses import dataclass

import pytest
import rawhttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inprocess_pool import Pool
from memkube.addresses import parse_address
from memkube.security import PUBLIC_PATHS, SESSION_COOKIE


@dataclass(frozen=True)
class Route:
    server: str  # "scheduler" or "worker"
    method: str
    template: str


def _routes(app: web.Application, server: str) -> list[Route]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        template = info.get("path") or info.get("formatter")
        if template and route.method != "HEAD":
            out.append(Route(server, route.method, template))
    return out


def _fill(template: str, value: str) -> str:
    """The template with every ``{placeholder}`` replaced by ``value`` (percent-encoded)."""
    out, rest = "", template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        out += head
        rest = tail.partition("}")[2]
        out += urllib.parse.quote(value, safe="") or "x"
    return out + rest


CREDENTIALS = ["none", "wrong", "non-ascii", "bad-cookie", "metrics", "token"]
METRICS_TOKEN = "hostile-test-metrics-token"
junk_text = st.text(max_size=24)
header_values = st.one_of(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(
    b"\n", b"")), junk_text.map(lambda t: t.replace("\r", "").replace("\n", "").encode()))
bodies = st.one_of(st.just(b""), st.binary(max_size=300),
                   st.sampled_from([b"{}", b"[]", b'{"keys": 5}', b'{"names": [1]}',
                                    b'{"kind": null}', b"\x80\x81", b"token=" + b"\xff" * 8,
                                    b"\x93\x01\x02\x03", b"\x00" * 64]))


@st.composite
def hostile_requests(draw: st.DrawFn, routes: list[Route]) -> dict[str, object]:
    route = draw(st.sampled_from(routes))
    method = draw(st.one_of(st.just(route.method), st.sampled_from(
        ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])))
    path = _fill(route.template, draw(junk_text))
    if draw(st.booleans()):
        path += "?" + urllib.parse.urlencode({draw(junk_text): draw(junk_text)})
    if draw(st.booleans()):
        path += urllib.parse.quote(draw(junk_text), safe="")
    headers: dict[str, bytes] = {}
    for name in draw(st.lists(st.sampled_from(
            ["Origin", "Content-Type", "Upgrade", "Connection-Extra", "X-Forwarded-For",
             "Transfer-Encoding-Junk", "Expect", "Cookie"]), max_size=3, unique=True)):
        headers[name] = draw(header_values)
    body = draw(bodies)
    lie = draw(st.sampled_from(["true", "more", "less", "none"]))
    return {"route": route, "method": method, "path": path, "headers": headers,
            "body": body, "lie": lie, "credential": draw(st.sampled_from(CREDENTIALS))}


def _credential(kind: str, token: str) -> dict[str, bytes]:
    return {
        "none": {},
        "wrong": {"Authorization": b"Bearer not-the-token"},
        "non-ascii": {"Authorization": "Bearer tök\u2603".encode()},
        "bad-cookie": {"Cookie": f"{SESSION_COOKIE}=".encode() + b"\xffforged"},
        "metrics": {"Authorization": f"Bearer {METRICS_TOKEN}".encode()},
        "token": {"Authorization": f"Bearer {token}".encode()},
    }[kind]


async def _attack(pool: Pool, req: dict[str, object]) -> int | None:
    route = req["route"]
    assert isinstance(route, Route)
    base = (pool.scheduler.http_address if route.server == "scheduler"
            else parse_address(pool.workers[0].address).http)
    headers = {**req["headers"], **_credential(str(req["credential"]), pool.token)}  # type: ignore[dict-item]
    body = req["body"]
    assert isinstance(body, bytes)
    lie = req["lie"]
    if lie == "true":
        headers["Content-Length"] = str(len(body)).encode()
    elif lie == "more":
        headers["Content-Length"] = str(len(body) + 1000).encode()
    elif lie == "less" and body:
        headers["Content-Length"] = str(len(body) // 2).encode()
    data = rawhttp.build(str(req["method"]), str(req["path"]), headers, body,
                         content_length=False)
    try:
        return (await rawhttp.send(base, data, timeout=15, half_close=True)).status
    except (asyncio.IncompleteReadError, ConnectionError):
        return None  # the server closed the connection on us: acceptable


@pytest.mark.slow
@pytest.mark.parametrize("pool", [{"metrics_token": METRICS_TOKEN}], indirect=True)
async def test_hostile_requests_to_every_route(pool: Pool,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aiohttp.server")
    routes = _routes(pool.scheduler.app, "scheduler") + _routes(pool.workers[0].app, "worker")
    paths = {(r.server, r.template) for r in routes}
    assert ("scheduler", "/api/v1/scatter") in paths and ("worker", "/data/{key}") in paths
    seen: list[tuple[str, str, int | None]] = []

    def check(req: dict[str, object]) -> None:
        status = asyncio.run_coroutine_threadsafe(_attack(pool, req), loop).result(30)
        route = req["route"]
        assert isinstance(route, Route)
        seen.append((route.server, route.template, status))
        assert status is None or status < 500, (req, status)
        path = urllib.parse.unquote(str(req["path"]).partition("?")[0])
        if req["credential"] == "metrics" and path == "/metrics" and req["method"] == "GET":
            pass  # the one thing the metrics token opens
        elif req["credential"] != "token" and path not in PUBLIC_PATHS and status is not None:
            # refused (4xx), or a browser sent to the login form
            assert 400 <= status < 500 or (status == 303 and path.startswith("/dashboard")), \
                (req, status)

    def sweep(route: Route) -> None:
        # Each route gets its own examples: drawn from all ~30 routes at once, one could go
        # unvisited by chance.
        @given(req=hostile_requests([route]))
        @settings(max_examples=12, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
        def attack(req: dict[str, object]) -> None:
            check(req)

        attack()

    loop = asyncio.get_running_loop()
    for route in routes:
        await loop.run_in_executor(None, sweep, route)
    # aiohttp logs malformed messages it answered with 400 as errors too; anything else is
    # a handler that failed.
    errors = [r for r in caplog.records if r.name == "aiohttp.server"
              and r.levelno >= logging.ERROR
              and not (r.exc_info and isinstance(r.exc_info[1], BadHttpMessage))]
    assert not errors, [e.getMessage() + str(e.exc_info and e.exc_info[1]) + repr(e.exc_info and e.exc_info[1]) for e in errors][:3]
    assert {(server, t) for server, t, _ in seen} == paths
    assert len(pool.scheduler.state.workers) == 2
    assert await pool.client.submit(sum, [3, 4]).result() == 7
