"""Addresses as users write them: ``tcp://host:port`` or ``tls://host:port``.

A memkube address names one aiohttp server: ``tcp`` maps to ``http``/``ws``, ``tls`` to
``https``/``wss``. Bare ``host:port`` means ``tcp``. IPv6 hosts are written in brackets.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from .errors import ConfigError

_SCHEMES = {"tcp": ("http", "ws"), "tls": ("https", "wss")}


class Address(NamedTuple):
    scheme: str  # "tcp" or "tls"
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def http(self) -> str:
        """Base URL for HTTP requests to this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{_SCHEMES[self.scheme][0]}://{host}:{self.port}"

    @property
    def ws(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{_SCHEMES[self.scheme][1]}://{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``tcp://host:port``, ``tls://host:port``, ``http(s)://…`` or ``host:port``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"not an address: {text!r}")
    raw = text.strip()
    if "://" not in raw:
        raw = "tcp://" + raw
    parts = urlsplit(raw)
    scheme = {"http": "tcp", "https": "tls", "ws": "tcp", "wss": "tls"}.get(
        parts.scheme, parts.scheme
    )
    if scheme not in _SCHEMES:
        raise ConfigError(f"address {text!r}: scheme must be tcp:// or tls://")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"address {text!r}: invalid port") from exc
    if not parts.hostname or port is None:
        raise ConfigError(f"address {text!r}: expected scheme://host:port")
    return Address(scheme, parts.hostname, port)
