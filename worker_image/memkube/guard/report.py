"""Telling the scheduler about a memory kill at once, before the worker is back.

The guard POSTs the kill report (running task keys, peak, limit) to the scheduler's
``/api/v1/memory-kill`` with the pool token, so a task that can never fit fails while the
new worker is still starting (Python and its imports take seconds on a busy node). Plain
``urllib`` and ``ssl`` from the standard library: the guard stays small. If the scheduler
cannot be reached the report goes with the restarted worker's registration instead.
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("memkube.guard")

_SCHEMES = {"tcp": "http", "tls": "https", "ws": "http", "wss": "https",
            "http": "http", "https": "https"}


@dataclass(frozen=True)
class KillReporter:
    scheduler: str  # tcp://host:port or tls://host:port
    token: str | None
    name: str
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout: float = 2.0

    def url(self) -> str:
        scheme, sep, rest = self.scheduler.partition("://")
        if not sep:
            scheme, rest = "tcp", self.scheduler
        return f"{_SCHEMES.get(scheme, 'http')}://{rest.rstrip('/')}/api/v1/memory-kill"

    def send(self, report: dict[str, Any]) -> bool:
        """POST the report; whether the scheduler took it."""
        body = json.dumps({"worker": self.name, "report": report}).encode()
        request = urllib.request.Request(self.url(), data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        context = None
        if request.full_url.startswith("https:"):
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=context) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("could not report the memory kill to the scheduler (%s); the "
                        "restarted worker will", exc)
            return False
