"""The HTTP plumbing the scheduler and workers share: a server and a peer session.

Not covered: routes and auth (each server adds its own; see :mod:`memkube.security`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from .security import Auth, TLSConfig


async def start_server(app: web.Application, host: str, port: int,
                       tls: TLSConfig) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port); returns the runner and the port.

    Websocket handlers get a short shutdown grace: peers are told to close first.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls.server_context())
    await site.start()
    server: Any = site._server  # aiohttp exposes the bound port only here
    sockets = server.sockets if server else []
    return runner, (sockets[0].getsockname()[1] if sockets else port)


def peer_session(auth: Auth, tls: TLSConfig, *, limit: int = 100) -> aiohttp.ClientSession:
    """A session presenting the pool's token, for calls to the scheduler and other workers."""
    return aiohttp.ClientSession(
        headers=auth.headers(),
        connector=aiohttp.TCPConnector(ssl=tls.client_context() or False, limit=limit),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )
