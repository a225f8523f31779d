"""A real aiohttp server on loopback serving the dashboard and /metrics over a snapshot
source, guarded by memkube.security.Auth as the scheduler is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from memkube.dashboard import setup_dashboard
from memkube.dashboard.metrics import metrics_response, render_scheduler_metrics
from memkube.dashboard.sessions import Sessions
from memkube.security import Auth

TOKEN = "pool-token-0123456789abcdefghijklmnopqrstuv"
METRICS_TOKEN = "metrics-only-token-9876543210"


@dataclass
class Served:
    url: str
    auth: Auth
    pool: Any  # the snapshot source: a ChangingPool, or any callable returning a snapshot


def build_app(snapshot: Callable[[], dict[str, Any]], auth: Auth,
              sessions: Sessions | None = None) -> web.Application:
    """What the scheduler does: auth middleware, /api/v1/pool, /metrics, the dashboard."""
    app = web.Application(middlewares=[auth.middleware()])

    async def pool(request: web.Request) -> web.Response:
        return web.json_response(snapshot())

    async def metrics(request: web.Request) -> web.Response:
        return metrics_response(render_scheduler_metrics(snapshot()))

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/api/v1/pool", pool)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    setup_dashboard(app, snapshot, auth, sessions)
    return app


@asynccontextmanager
async def serve(pool: Callable[[], dict[str, Any]], auth: Auth | None = None,
                sessions: Sessions | None = None) -> AsyncIterator[Served]:
    auth = auth or Auth(token=TOKEN, metrics_token=METRICS_TOKEN)
    runner = web.AppRunner(build_app(pool, auth, sessions))  # access log on, as in production
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(url=f"http://127.0.0.1:{port}", auth=auth, pool=pool)
    finally:
        await runner.cleanup()
