"""``client.memory_report()``: the pool's memory as a plain-text table.

One row per worker (name, state, limit, managed, unmanaged, spilled, process, restarts),
then the pool's totals and the thresholds in force, so a terminal or a log shows the same
figures the dashboard draws. Reads the pool snapshot of ``GET /api/v1/pool``.

Not covered: fetching the snapshot (the client does) and printing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..dashboard.explain import display_state
from ..dashboard.units import format_bytes, format_percent

_COLUMNS = ("worker", "state", "limit", "managed", "unmanaged", "spilled", "process", "restarts")
_NUMERIC = frozenset(_COLUMNS[2:])


def format_memory_report(snapshot: Mapping[str, Any]) -> str:
    """The per-worker memory table for ``snapshot``, with a totals line and thresholds."""
    listed = snapshot.get("workers") or []
    if isinstance(listed, Mapping):  # client.scheduler_info() keys workers by address
        listed = list(listed.values())
    workers: Sequence[Mapping[str, Any]] = sorted(listed, key=lambda w: str(w.get("name", "")))
    if not workers:
        return "memkube pool: no workers\n"
    rows = [_row(w) for w in workers]
    totals = _totals(workers)
    widths = [max(len(col), *(len(r[i]) for r in [*rows, totals])) for i, col in enumerate(_COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if col in _NUMERIC else cell.ljust(width)
            for col, cell, width in zip(_COLUMNS, cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(_COLUMNS), rule, *(line(r) for r in rows), rule, line(totals)]
    out.extend(_footer(snapshot, workers))
    return "\n".join(out) + "\n"


def _row(worker: Mapping[str, Any]) -> list[str]:
    figures: Mapping[str, Any] = worker.get("memory") or {}
    state: str = display_state(worker)
    if figures.get("spill_full"):
        state += ", disk full"
    return [
        str(worker.get("name", "")),
        state,
        format_bytes(figures.get("limit")) if figures.get("limit") else "none",
        format_bytes(figures.get("managed") or 0),
        format_bytes(figures.get("unmanaged") or 0),
        format_bytes(figures.get("spilled") or 0),
        format_bytes(figures.get("process") or 0),
        str(int(worker.get("memory_restarts") or 0)),
    ]


def _totals(workers: Sequence[Mapping[str, Any]]) -> list[str]:
    def total(field: str) -> int:
        return sum(int((w.get("memory") or {}).get(field) or 0) for w in workers)

    limited = [w for w in workers if (w.get("memory") or {}).get("limit")]
    # A pool with any unlimited worker has no meaningful total limit.
    limit = format_bytes(total("limit")) if len(limited) == len(workers) else "none"
    return [
        f"total ({len(workers)})", "", limit,
        format_bytes(total("managed")), format_bytes(total("unmanaged")),
        format_bytes(total("spilled")), format_bytes(total("process")),
        str(sum(int(w.get("memory_restarts") or 0) for w in workers)),
    ]


def _footer(snapshot: Mapping[str, Any], workers: Sequence[Mapping[str, Any]]) -> list[str]:
    lines: list[str] = []
    distinct = {_thresholds_text(w) for w in workers}
    if len(distinct) == 1:
        lines.append(f"thresholds: {distinct.pop()}")
    else:
        lines.extend(f"thresholds of {w.get('name')}: {_thresholds_text(w)}" for w in workers)
    replication = snapshot.get("replication") or {}
    if replication.get("shortfall"):
        lines.append(f"replication: {replication['shortfall']} keys below "
                     f"{replication.get('factor', 1)} copies")
    return lines


def _thresholds_text(worker: Mapping[str, Any]) -> str:
    thresholds: Mapping[str, Any] = (worker.get("memory") or {}).get("thresholds") or {}
    return ", ".join(f"{name} {format_percent(thresholds.get(name))}"
                     for name in ("target", "spill", "pause", "terminate"))
