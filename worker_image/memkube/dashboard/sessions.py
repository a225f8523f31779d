"""Dashboard sessions: random, expiring, revocable, bounded in number.

A session is what a browser gets for presenting the pool's token once at the login form.
Its cookie value is 256 random bits, unrelated to the token; the store keeps only a hash of
it, with its expiry. Logging out revokes it for every copy of the cookie; it expires after
``ttl`` seconds in any case; past ``max_sessions`` the oldest are dropped (so logging in in a
loop cannot grow the store without bound).

Not covered: what a session may open (the dashboard's read routes, see ``routes``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class Sessions:
    """The live dashboard sessions of one server."""

    def __init__(self, ttl: float = 8 * 3600.0, max_sessions: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: Seconds a session lasts from login (also the cookie's Max-Age).
        self.ttl = ttl
        #: Live sessions kept at most; the oldest go first.
        self.max_sessions = max_sessions
        self._clock = clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()  # by creation order

    def __len__(self) -> int:
        self._drop_expired()
        return len(self._expiry)

    def create(self) -> str:
        """A new session's cookie value."""
        self._drop_expired()
        value = secrets.token_urlsafe(32)
        self._expiry[_digest(value)] = self._clock() + self.ttl
        while len(self._expiry) > self.max_sessions:
            self._expiry.popitem(last=False)
        return value

    def valid(self, value: str | None) -> bool:
        """Whether ``value`` is a live session's cookie (any string is safe to pass)."""
        if not value:
            return False
        expiry = self._expiry.get(_digest(value))
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._expiry[_digest(value)]
            return False
        return True

    def revoke(self, value: str | None) -> None:
        if value:
            self._expiry.pop(_digest(value), None)

    def _drop_expired(self) -> None:
        now = self._clock()
        # Creation order is expiry order (one ttl for all): stop at the first live one.
        while self._expiry:
            digest, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[digest]
