"""The dashboard's HTTP routes, its login flow and its guard.

``setup_dashboard`` adds to an aiohttp app:

- ``GET /dashboard/``: the page (HTML, with its script and stylesheet under
  ``/dashboard/static/``; all packaged, nothing from the internet);
- ``GET /dashboard/api/pool``: the live feed, the JSON view the page polls every second;
- ``GET /dashboard/login``: a form; ``POST /dashboard/login`` with the token as a form field
  (urlencoded, at most :data:`LOGIN_MAX_BODY` bytes, refused with 413 before more is read)
  starts a session (:mod:`.sessions`: random, expiring, revocable), sets its
  ``memkube_session`` cookie (HttpOnly, SameSite=Strict, Max-Age) and redirects to the page,
  so the token travels in a request body only, never in a URL or an access log;
- ``POST /dashboard/logout``: revokes the session and clears the cookie.

A middleware guards every ``/dashboard`` path itself (so the dashboard is never open even on an
app without ``Auth.middleware()``): a browser without a session is sent to the login form,
API calls get 401. The session cookie opens only the dashboard's own reads (GET/HEAD of the
page, its static files and its feed); everything else, here and on the rest of the server,
needs the bearer token. Login and logout from a foreign ``Origin`` get 403. Responses carry a
strict Content-Security-Policy.

Not covered: the snapshot (given by the scheduler) and ``/metrics`` (see ``metrics``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..security import GRANT_KEY, SESSION_COOKIE, Auth, refuse, same_origin, same_secret
from .sessions import Sessions
from .view import DashboardFeed

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
LOGIN_PATH = "/dashboard/login"
_STATIC_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_ERROR_MARK = "<!--error-->"
LOGIN_MAX_BODY = 4096
"""Bytes a login form may send (a token is 43); anything larger is refused unread."""
LOGIN_READ_TIMEOUT = 10.0
"""Seconds the whole login body may take to arrive."""
_FORM_TYPE = "application/x-www-form-urlencoded"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup_dashboard(app: web.Application, snapshot: Callable[[], Mapping[str, Any]],
                    auth: Auth, sessions: Sessions | None = None) -> None:
    """Add the dashboard to ``app`` (before it starts). ``snapshot`` returns the pool snapshot
    of ``GET /api/v1/pool``; it is called once per page refresh, on the event loop.
    ``sessions`` (default: a fresh store with default lifetimes) holds the login sessions."""
    feed = DashboardFeed(snapshot)
    pages = _Pages.load()
    store = sessions if sessions is not None else Sessions()
    # Outermost, so a browser without a session is redirected before any 401 is raised.
    app.middlewares.insert(0, _guard(auth, store))

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=pages.index, content_type="text/html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC_TYPES:
            raise web.HTTPNotFound()
        return web.Response(body=pages.static[name], content_type=_STATIC_TYPES[name])

    async def pool(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(feed.view()), content_type="application/json")

    async def login_form(request: web.Request) -> web.Response:
        if auth.token is None or store.valid(request.cookies.get(SESSION_COOKIE)):
            raise web.HTTPSeeOther(f"{PREFIX}/")
        return pages.login_response("")

    async def login(request: web.Request) -> web.StreamResponse:
        form = await _read_form(request)
        if isinstance(form, web.Response):
            return form
        if auth.token is None:
            raise web.HTTPSeeOther(f"{PREFIX}/")
        presented = form.get("token", "")
        if not same_secret(presented.strip(), auth.token):
            log.warning("dashboard login with a wrong token from %s", request.remote)
            return pages.login_response("That token is not this pool's token.", status=401)
        response = _see_other(f"{PREFIX}/")
        response.set_cookie(
            SESSION_COOKIE, store.create(), path=PREFIX, httponly=True, samesite="Strict",
            secure=request.secure, max_age=int(store.ttl))
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        store.revoke(request.cookies.get(SESSION_COOKIE))
        response = _see_other(LOGIN_PATH)
        response.del_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    async def to_page(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(f"{PREFIX}/")

    app.router.add_get(PREFIX, to_page)
    app.router.add_get(f"{PREFIX}/", page)
    app.router.add_get(f"{PREFIX}/static/{{name}}", static)
    app.router.add_get(f"{PREFIX}/api/pool", pool)
    app.router.add_get(LOGIN_PATH, login_form)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post(f"{PREFIX}/logout", logout)


async def _read_form(request: web.Request) -> dict[str, str] | web.Response:
    """The login form's fields, read with a size cap and a deadline; or the refusal."""
    too_large = f"memkube: a login form is at most {LOGIN_MAX_BODY} bytes\n"
    length = request.content_length
    if length is not None and length > LOGIN_MAX_BODY:
        return refuse(request, 413, too_large)
    if request.content_type not in (_FORM_TYPE, "application/octet-stream"):
        return refuse(request, 415, f"memkube: send {_FORM_TYPE}\n")
    body = bytearray()
    try:
        async with asyncio.timeout(LOGIN_READ_TIMEOUT):
            while len(body) <= LOGIN_MAX_BODY:
                chunk = await request.content.read(LOGIN_MAX_BODY + 1 - len(body))
                if not chunk:
                    break
                body += chunk
    except TimeoutError:
        return refuse(request, 408, "memkube: login body too slow\n")
    if len(body) > LOGIN_MAX_BODY:
        return refuse(request, 413, too_large)
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _see_other(location: str) -> web.Response:
    # A plain response rather than a raised HTTPSeeOther, so it can carry a cookie.
    return web.Response(status=303, headers={"Location": location})


def _guard(auth: Auth, sessions: Sessions) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return await handler(request)
        if not same_origin(request):
            return refuse(request, 403, "memkube: cross-origin request refused\n")
        cookie = request.cookies.get(SESSION_COOKIE)
        if path == f"{PREFIX}/logout" and sessions.valid(cookie):
            request[GRANT_KEY] = "session"  # a session may end itself
        elif request.method in ("GET", "HEAD") and path != LOGIN_PATH and sessions.valid(cookie):
            request[GRANT_KEY] = "session"  # the dashboard's own reads
        elif path != LOGIN_PATH and not auth.allows(request):
            if request.method in ("GET", "HEAD") and path in (PREFIX, PREFIX + "/"):
                raise web.HTTPSeeOther(LOGIN_PATH)
            raise web.HTTPUnauthorized(
                text="memkube: log in at /dashboard/login\n",
                headers={"WWW-Authenticate": 'Bearer realm="memkube"'})
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with
        # the login and logout forms, and the Origin check could not tell them from a forgery.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return guard


_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class _Pages:
    """The packaged page, login form, script and stylesheet, read once."""

    def __init__(self, index: str, login: str, static: dict[str, bytes]) -> None:
        self.index = index
        self.login = login
        self.static = static
        # The login form must render before any session exists, so its style is inline and
        # allowed by hash rather than by loosening style-src.
        start = login.index("<style>") + len("<style>")
        style = login[start:login.index("</style>")]
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        self.login_csp = _CSP.replace("style-src 'self'", f"style-src 'sha256-{digest}'")

    @classmethod
    def load(cls) -> _Pages:
        files = resources.files("memkube.dashboard")
        return cls(
            index=files.joinpath("index.html").read_text(encoding="utf-8"),
            login=files.joinpath("login.html").read_text(encoding="utf-8"),
            static={name: files.joinpath(name).read_bytes() for name in _STATIC_TYPES},
        )

    def login_response(self, error: str, status: int = 200) -> web.Response:
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        response = web.Response(text=self.login.replace(_ERROR_MARK, message),
                                content_type="text/html", status=status)
        response.headers["Content-Security-Policy"] = self.login_csp
        return response
