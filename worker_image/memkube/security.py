"""Authentication and TLS for every memkube HTTP and websocket endpoint.

Workers run cloudpickled code, so an unauthenticated port is remote code execution. Every
route except the health probes needs the pool's token, presented as
``Authorization: Bearer <token>``. Browsers trade the token once for a session cookie (the
dashboard's login form), so the token never sits in a URL or a server log. A separate,
optional metrics token may read ``/metrics`` and nothing else.

Not covered: who generates the token (the local pool, the operator's Secret, the user).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import ConfigError

log = logging.getLogger(__name__)

SESSION_COOKIE = "memkube_session"
PUBLIC_PATHS = frozenset({"/health", "/ready", "/dashboard/login"})
TOKEN_ENV = "MEMKUBE_TOKEN"
METRICS_TOKEN_ENV = "MEMKUBE_METRICS_TOKEN"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    """A fresh random pool token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_from_env(explicit: str | None = None) -> str | None:
    """The token given explicitly, else ``MEMKUBE_TOKEN``, else ``None``."""
    return explicit or os.environ.get(TOKEN_ENV) or None


def session_value(token: str) -> str:
    """The session cookie value for ``token``: a keyed hash, so the cookie is not the token."""
    return hmac.new(token.encode(), b"memkube-dashboard-session", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Auth:
    """The credentials a server accepts. ``token=None`` disables auth (tests and embedding only)."""

    token: str | None
    metrics_token: str | None = None

    def headers(self) -> dict[str, str]:
        """Headers a client presents to a server guarded by this ``Auth``."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def allows(self, request: web.Request) -> bool:
        """Whether ``request`` carries an accepted credential for its path."""
        if self.token is None or request.path in PUBLIC_PATHS:
            return True
        presented = _bearer(request)
        if presented is not None:
            if hmac.compare_digest(presented, self.token):
                return True
            metrics = self.metrics_token
            return (
                metrics is not None
                and request.path == "/metrics"
                and request.method == "GET"
                and hmac.compare_digest(presented, metrics)
            )
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and hmac.compare_digest(cookie, session_value(self.token))

    def middleware(self) -> Middleware:
        """An aiohttp middleware answering 401 (and logging it) to unauthenticated requests."""

        @web.middleware
        async def check_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.allows(request):
                log.warning(
                    "rejected unauthenticated %s %s from %s",
                    request.method, request.path, request.remote,
                )
                raise web.HTTPUnauthorized(
                    text="memkube: missing or wrong token\n",
                    headers={"WWW-Authenticate": 'Bearer realm="memkube"'},
                )
            return await handler(request)

        return check_auth


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    return value.strip()


@dataclass(frozen=True)
class TLSConfig:
    """Paths to a certificate, its key and the CA that peers' certificates must chain to."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    def server_context(self) -> ssl.SSLContext | None:
        if not self.cert:
            return None
        if not self.key:
            raise ConfigError("--tls-cert needs --tls-key")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext | None:
        if not (self.cert or self.ca):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.cert and self.key:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx
