"""Plain-language answers to "why did my worker pause / spill / restart?".

Each worker on the dashboard carries a few sentences built here from its memory figures and
its recent events, so the cause is one click away rather than a reading of four numbers.
The sentences name the threshold crossed, in bytes and as a fraction of the limit, and say
what the worker does about it.

Not covered: advice tuned to one workload; this states what the figures show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .units import format_bytes, format_percent

DisplayState = Literal["normal", "spilling", "paused", "retiring"]

_OOM_ADVICE = ("memory grew past the pod limit faster than the terminate threshold could act. "
               "Raise memoryOverhead, lower the thresholds, or make tasks smaller.")

EVENT_HINTS: dict[str, str] = {
    "pause": "Process memory crossed the pause threshold (or the spill disk filled): the "
             "worker starts no new task and accepts no transfers until memory falls.",
    "resume": "Memory fell back below the pause threshold: the worker runs tasks again.",
    "memory-restart": "Process memory crossed the terminate threshold: the worker restarted "
                      "itself before the kernel could kill it; the scheduler recovers its data.",
    "oom-kill": "The kernel's OOM killer ended the container: " + _OOM_ADVICE,
    "retire": "The worker was retired (scale-down): its unique data moved to others first.",
    "retiring": "Retirement started (scale-down): the worker's unique data is moving to others.",
    "worker-retired": "The worker finished retiring and left; its unique data had moved first.",
    "worker-lost": "The scheduler lost contact with the worker; copies elsewhere are "
                   "re-replicated and the rest recomputed.",
    "worker-added": "A worker joined the pool (also after a restart).",
    "key-lost": "Every copy of a key was lost and it could not be recomputed: its futures "
                "fail with a data-lost error.",
}


def display_state(worker: Mapping[str, Any]) -> DisplayState:
    """The state a worker is shown in: retiring wins over paused, paused over spilling."""
    figures: Mapping[str, Any] = worker.get("memory") or {}
    if worker.get("status") == "retiring":
        return "retiring"
    if figures.get("paused") or figures.get("state") == "paused" or worker.get("status") == "paused":
        return "paused"
    if figures.get("state") == "spilling":
        return "spilling"
    return "normal"


def explain_worker(worker: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences describing why ``worker`` is in its state, newest concern first.

    ``worker`` is one entry of the pool snapshot's ``workers``; ``events`` are that worker's
    events from the snapshot, oldest first.
    """
    figures: Mapping[str, Any] = worker.get("memory") or {}
    limit = figures.get("limit")
    thresholds: Mapping[str, Any] = figures.get("thresholds") or {}
    process = int(figures.get("process") or 0)
    managed = int(figures.get("managed") or 0)
    unmanaged = int(figures.get("unmanaged") or 0)
    lines: list[str] = []

    if worker.get("status") == "retiring":
        lines.append("Retiring: its unique data is moving to other workers, then it exits.")
    if figures.get("spill_full"):
        lines.append("The spill disk (or the max-spill cap) is full: the worker pauses "
                     "instead of crashing until memory or disk frees up.")
    pause_at = _bytes_at(limit, thresholds, "pause")
    if display_state(worker) == "paused":
        if pause_at is not None and process >= pause_at:
            lines.append("Paused: " + _crossing(process, limit, thresholds, "pause")
                         + " It starts no task and accepts no transfer until memory falls.")
        elif not figures.get("spill_full"):
            # The pause (an event) and the figures (a heartbeat) arrive separately.
            last = _last(events, "pause")
            cause = f" ({last['message']})" if last and last.get("message") else ""
            lines.append(f"Paused{cause}; its latest figures show process memory "
                         f"{format_bytes(process)}, below the pause threshold "
                         f"({_level(limit, thresholds, 'pause')}), so it resumes shortly.")
    elif figures.get("state") == "spilling":
        lines.append("Spilling: " + _crossing(process, limit, thresholds, "spill")
                     + " Least-recently-used values go to disk until memory is below "
                     + _level(limit, thresholds, "target") + ".")
    if limit and unmanaged > managed and unmanaged > 0.5 * limit:
        lines.append(f"Most memory is unmanaged ({format_bytes(unmanaged)} vs "
                     f"{format_bytes(managed)} of results): memory inside running tasks, "
                     "libraries or fragmentation, which spilling cannot free.")
    if not limit:
        lines.append("No memory limit is set: no threshold applies.")

    restarts = int(worker.get("memory_restarts") or 0)
    if restarts:
        last = _last(events, "memory-restart")
        detail = f" Last: {last['message']}" if last and last.get("message") else ""
        lines.append(f"Restarted {restarts} time{'s' if restarts != 1 else ''} for "
                     f"crossing the terminate threshold ({_level(limit, thresholds, 'terminate')})."
                     + detail)
    oom = [e for e in events if e.get("kind") == "oom-kill"]
    if oom:
        lines.append(f"Killed by the kernel's OOM killer {len(oom)} time"
                     f"{'s' if len(oom) != 1 else ''} (seen by the operator): "
                     + _OOM_ADVICE)
    if not lines:
        spill_at = _bytes_at(limit, thresholds, "spill")
        level = _level(limit, thresholds, "spill")
        if spill_at is None:
            lines.append(f"Normal: process memory {format_bytes(process)}.")
        elif process < spill_at:
            lines.append(f"Normal: process memory {format_bytes(process)}, below the spill "
                         f"threshold ({level}).")
        else:
            # The state comes from the worker's last measurement; the figures may be newer.
            lines.append(f"Normal by its last measurement, but process memory "
                         f"{format_bytes(process)} is above the spill threshold ({level}): "
                         "it starts spilling at its next one.")
    return lines


def _bytes_at(limit: int | None, thresholds: Mapping[str, Any], name: str) -> float | None:
    fraction = thresholds.get(name)
    return None if not limit or fraction is None else limit * fraction


def _crossing(process: int, limit: int | None, thresholds: Mapping[str, Any], name: str) -> str:
    return (f"process memory {format_bytes(process)} is at or above the {name} threshold, "
            f"{_level(limit, thresholds, name)}.")


def _level(limit: int | None, thresholds: Mapping[str, Any], name: str) -> str:
    fraction = thresholds.get(name)
    if not limit or fraction is None:
        return f"{name} threshold off"
    return f"{format_percent(fraction)} of {format_bytes(limit)} = {format_bytes(limit * fraction)}"


def _last(events: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    matching = [event for event in events if event.get("kind") == kind]
    return matching[-1] if matching else None
