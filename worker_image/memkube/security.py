"""Authentication and TLS for every memkube HTTP and websocket endpoint.

Workers run cloudpickled code, so an unauthenticated port is remote code execution. Every
route except the health probes needs the pool's token, presented as
``Authorization: Bearer <token>``; a scheduler or worker without a token refuses to start
unless it was explicitly opted out (:meth:`Auth.insecure_no_token`, tests only). A separate,
optional metrics token may ``GET /metrics`` and nothing else. Browsers trade the token once
for a dashboard session (see :mod:`memkube.dashboard.sessions`); the session opens only the
dashboard's own read routes, which the dashboard checks itself and marks on the request
(:data:`GRANT_KEY`). A request that may change state and carries an ``Origin`` other than the
server's own is refused (403), whatever credential it holds.

The middleware records what a request was granted in ``request[GRANT_KEY]`` (``"token"``,
``"metrics"``, ``"session"`` or ``"public"``); :mod:`memkube.serving` uses it to tell proven
connections from unproven ones.

Not covered: who generates the token (the local pool, the operator's Secret, the user).
"""

from __future__ import annotations

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
INSECURE_ENV = "MEMKUBE_INSECURE_NO_TOKEN"
GRANT_KEY = web.RequestKey("memkube.grant", str)
"""The request key holding what the request was granted: token, metrics, session, public."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    """A fresh random pool token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_from_env(explicit: str | None = None) -> str | None:
    """The token given explicitly, else ``MEMKUBE_TOKEN``, else ``None``."""
    return explicit or os.environ.get(TOKEN_ENV) or None


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time comparison of two strings of any characters (never raises: a header
    with non-ASCII or undecodable bytes is simply not the secret)."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Auth:
    """The credentials a server accepts.

    ``token=None`` is refused by servers (:meth:`require`) unless ``insecure`` is set, which
    only :meth:`insecure_no_token` does: an explicit opt-out for tests, logged loudly.
    """

    token: str | None
    metrics_token: str | None = None
    insecure: bool = False

    @classmethod
    def insecure_no_token(cls) -> Auth:
        """No authentication at all: anyone who reaches the port runs code. Tests only."""
        log.warning("RUNNING WITH NO TOKEN: every endpoint is open and anyone who can reach "
                    "this port can run code here (--insecure-no-token / $%s); tests only",
                    INSECURE_ENV)
        return cls(None, insecure=True)

    def require(self, role: str) -> Auth:
        """``self`` if it has a token or was explicitly opted out; else ConfigError."""
        if self.token is None and not self.insecure:
            raise ConfigError(
                f"a {role} needs the pool's token (--token or ${TOKEN_ENV}): without one it "
                f"would run code for anyone who can reach it; --insecure-no-token (or "
                f"{INSECURE_ENV}=1) opts out, for tests only")
        return self

    def headers(self) -> dict[str, str]:
        """Headers a client presents to a server guarded by this ``Auth``."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def grant(self, request: web.Request) -> str | None:
        """What ``request`` may do: ``"token"``, ``"metrics"``, ``"public"``, or None (401).

        A grant already recorded on the request (the dashboard's session check) stands.
        """
        earlier = request.get(GRANT_KEY)
        if isinstance(earlier, str):
            return earlier
        if self.token is None:
            return "token"
        presented = _bearer(request)
        if presented is not None:
            if same_secret(presented, self.token):
                return "token"
            metrics = self.metrics_token
            if (metrics is not None and request.path == "/metrics"
                    and request.method in ("GET", "HEAD") and same_secret(presented, metrics)):
                return "metrics"
        if request.path in PUBLIC_PATHS:
            return "public"
        return None

    def allows(self, request: web.Request) -> bool:
        """Whether ``request`` carries an accepted credential for its path."""
        return self.grant(request) is not None

    def middleware(self) -> Middleware:
        """An aiohttp middleware: 403 to a foreign ``Origin`` on anything that may change
        state, 401 (logged, rate-limited) to requests without an accepted credential."""

        @web.middleware
        async def check_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not same_origin(request):
                _reject_log.warning("refused %s %r from %s: foreign Origin %r",
                                    request.method, request.path, request.remote,
                                    request.headers.get("Origin"))
                return refuse(request, 403, "memkube: cross-origin request refused\n")
            grant = self.grant(request)
            if grant is None:
                _reject_log.warning("rejected unauthenticated %s %r from %s",
                                    request.method, request.path, request.remote)
                return refuse(request, 401, "memkube: missing or wrong token\n",
                              {"WWW-Authenticate": 'Bearer realm="memkube"'})
            request[GRANT_KEY] = grant
            return await handler(request)

        return check_auth


# Rejections are logged through their own logger so that a flood of them can be rate-limited
# (memkube.serving installs the filter) without touching other warnings.
_reject_log = logging.getLogger(__name__ + ".rejected")


def refuse(request: web.Request, status: int, text: str,
           headers: dict[str, str] | None = None) -> web.Response:
    """A refusal, closing the connection if the request's body was not read: its bytes are
    not drained (or buffered) for a peer that was refused."""
    response = web.Response(status=status, text=text, headers=headers)
    if request.body_exists and not request.content.is_eof():
        response.force_close()
    return response


def same_origin(request: web.Request) -> bool:
    """False for a request that may change state (any method but GET/HEAD/OPTIONS, or a
    websocket upgrade) carrying an ``Origin`` that is not this server's own. Clients that
    are not browsers send no ``Origin`` and pass."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if request.method in _SAFE_METHODS and not upgrade:
        return True
    own = f"{request.scheme}://{request.host}"
    return same_secret(origin.strip().lower(), own.lower())


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    return value.strip()


def auth_from_options(token: str | None, metrics_token: str | None = None, *,
                      insecure: bool = False) -> Auth:
    """The ``Auth`` a command line asks for: the token given, else ``$MEMKUBE_TOKEN``; the
    metrics token given, else ``$MEMKUBE_METRICS_TOKEN``; with no token and ``insecure`` (or
    ``$MEMKUBE_INSECURE_NO_TOKEN=1``) the loud opt-out; with neither, ``Auth(None)``, which
    servers refuse."""
    token = token_from_env(token)
    metrics = metrics_token or os.environ.get(METRICS_TOKEN_ENV) or None
    if token is None and (insecure or os.environ.get(INSECURE_ENV, "") not in ("", "0")):
        return Auth.insecure_no_token()
    return Auth(token, metrics)


@dataclass(frozen=True)
class TLSConfig:
    """Paths to a certificate, its key and the CA that peers' certificates must chain to.

    A server with ``ca`` requires client certificates (``CERT_REQUIRED``); without ``ca`` it
    serves TLS to anyone and relies on the token alone.
    """

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
        if self.ca:
            # With a CA, peers (workers, clients, the operator) must present a certificate
            # that chains to it: mutual TLS, as --tls-ca promises.
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext | None:
        if not (self.cert or self.ca):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.cert and self.key:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx
