"""The connection guard's rules with a fake clock and fake transports (no sockets):
which connection goes when, and why."""

from __future__ import annotations

from typing import Any

from memkube.security import GRANT_KEY
from memkube.serving import ConnectionGuard, HTTPLimits


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1)


class FakeContent:
    def __init__(self, eof: bool) -> None:
        self.eof = eof

    def is_eof(self) -> bool:
        return self.eof


class FakeRequest(dict[Any, Any]):
    def __init__(self, eof: bool = True, grant: str | None = None) -> None:
        super().__init__()
        self.content = FakeContent(eof)
        if grant:
            self[GRANT_KEY] = grant


LIMITS = HTTPLimits(header_timeout=10, body_timeout=30, idle_timeout=120,
                    max_connections=10, max_untrusted=4)


def guard() -> tuple[ConnectionGuard, list[float]]:
    now = [0.0]
    return ConnectionGuard(LIMITS, clock=lambda: now[0]), now


def test_a_connection_without_a_request_goes_at_the_header_deadline() -> None:
    g, now = guard()
    t = FakeTransport()
    g.opened(t)  # type: ignore[arg-type]
    now[0] = 9.9
    g.sweep()
    assert not t.aborted
    now[0] = 10.1
    g.sweep()
    assert t.aborted and g.stats["header-timeout"] == 1 and len(g) == 0


def test_a_stalled_body_goes_but_a_long_handler_does_not() -> None:
    g, now = guard()
    stalled, busy = FakeTransport(), FakeTransport()
    for t, eof in ((stalled, False), (busy, True)):
        conn = g.opened(t)  # type: ignore[arg-type]
        conn.request = FakeRequest(eof=eof, grant="token")  # type: ignore[assignment]
    now[0] = 31
    g.sweep()
    assert stalled.aborted and not busy.aborted
    assert g.stats["body-timeout"] == 1


def test_proven_connections_idle_longer_and_are_never_evicted() -> None:
    g, now = guard()
    proven = FakeTransport()
    conn = g.opened(proven)  # type: ignore[arg-type]
    conn.request = FakeRequest(grant="token")  # type: ignore[assignment]
    assert conn.is_trusted()
    conn.request = None
    flood = [FakeTransport() for _ in range(20)]
    for t in flood:
        g.opened(t)  # type: ignore[arg-type]
    assert not proven.aborted
    assert sum(not t.aborted for t in flood) == LIMITS.max_untrusted
    assert [t.aborted for t in flood[-LIMITS.max_untrusted:]] == [False] * 4  # newest stay
    assert g.stats["evicted"] == 20 - LIMITS.max_untrusted
    now[0] = 60
    g.sweep()
    assert not proven.aborted  # 60 s idle: fine for a proven connection
    now[0] = 121
    g.sweep()
    assert proven.aborted and g.stats["idle"] == 1


def test_when_every_slot_is_proven_the_newcomer_is_refused() -> None:
    g, _ = guard()
    for _ in range(LIMITS.max_connections):
        conn = g.opened(FakeTransport())  # type: ignore[arg-type]
        conn.request = FakeRequest(grant="token")  # type: ignore[assignment]
        conn.is_trusted()
    newcomer = FakeTransport()
    g.opened(newcomer)  # type: ignore[arg-type]
    assert newcomer.aborted and g.stats["refused"] == 1
    assert len(g) == LIMITS.max_connections


def test_limits_stay_below_the_open_file_limit() -> None:
    small = HTTPLimits().clamped(256)
    assert small.max_connections + 128 + 64 <= 256
    assert small.max_untrusted <= small.max_connections // 2
    assert HTTPLimits().clamped(1 << 20).max_connections == HTTPLimits().max_connections
