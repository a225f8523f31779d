"""Operations from clients and workers applied to the state machine, one at a time; no I/O.

The shell (:mod:`.server`) decodes a frame into operations and hands each to
:func:`apply_client_op` or :func:`apply_worker_op` here. Each operation is validated first
(:func:`memkube.protocol.validate`); one that does not fit, or whose handler raises, is
answered with :func:`error_for` — an ``error`` naming the op and the cause, with the
request's ``id`` (the client fails that request) or the keys it concerned (the client fails
those futures) — and the next operation is handled as usual: the connection stays open
and nothing reaches another client.

Operations that wait (``retire``, ``wait-for-workers``) are not here: the shell runs them
as tasks, so a waiting request never holds up the client's other messages.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol import INLINE_LIMIT, InvalidMessage, Message
from .state import SchedulerState

log = logging.getLogger(__name__)


def error_for(msg: Any, exc: BaseException) -> Message:
    """The ``error`` answering operation ``msg`` that failed with ``exc``."""
    op = msg.get("op") if isinstance(msg, dict) else None
    op = op if isinstance(op, str) else "?"
    if isinstance(exc, InvalidMessage):
        text = str(exc)
    else:
        text = f"{op[:64]} failed in the scheduler: {type(exc).__name__}: {exc}"
    reply: Message = {"op": "error", "message": text[:2000], "request": op[:64]}
    if isinstance(msg, dict):
        rid = msg.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool):
            reply["id"] = rid
        keys = msg.get("wants") if op == "update-graph" else None
        if isinstance(keys, list):
            reply["keys"] = [k for k in keys if isinstance(k, str) and k][:100_000]
    return reply


def apply_client_op(state: SchedulerState, client_id: str, msg: Message,
                    info: Any = None) -> Message | None:
    """Apply one validated client operation; returns its reply, if it has one."""
    op = msg["op"]
    if op == "update-graph":
        state.update_graph(client_id, msg["tasks"], msg["wants"])
    elif op == "release-keys":
        state.release_keys(client_id, msg["keys"])
    elif op == "cancel-keys":
        state.cancel_keys(client_id, msg["keys"])
    elif op == "replicate":
        state.replicate(msg["keys"], msg["n"])
    elif op == "who-has":
        return {"op": "reply", "id": msg["id"], "result": state.who_has(msg["keys"])}
    elif op == "info":
        return {"op": "reply", "id": msg["id"], "result": info() if info else {}}
    elif op == "scatter-plan":
        plan = state.grants.plan(state, client_id, msg["keys"], state.clock())
        return {"op": "reply", "id": msg["id"], "result": plan}
    elif op == "register-client":
        raise InvalidMessage("register-client: this connection has registered already",
                             op)
    return None


def apply_worker_op(state: SchedulerState, address: str, msg: Message) -> None:
    """Apply one validated worker operation."""
    op = msg["op"]
    if op == "task-finished":
        peak = msg.get("peak")
        value = msg.get("value")
        state.task_finished(address, msg["key"], msg["nbytes"], msg["type"],
                            float(msg.get("duration", 0.0)),
                            peak if isinstance(peak, int) and not isinstance(peak, bool)
                            else None,
                            value=value if value is not None and len(value) <= INLINE_LIMIT
                            else None)
    elif op == "heartbeat-worker":
        state.worker_heartbeat(address, msg["memory"], msg["executing"], msg["ready"])
    elif op == "task-erred":
        state.task_erred(address, msg["key"], bytes(msg["exception"]), msg["traceback"],
                         msg["text"])
    elif op == "add-keys":
        state.add_keys(address, msg["keys"])
    elif op == "lost-keys":
        state.lost_keys(address, msg["keys"])
    elif op == "missing-data":
        state.missing_data(address, msg["key"], msg["dep"], msg["worker"].split(","))
    elif op == "worker-status":
        state.worker_status(address, msg["status"], str(msg.get("reason", "")))
    elif op == "memory-restart":
        state.memory_restart(address, msg["reason"], msg)
    elif op == "reschedule":
        state.reschedule(address, msg["key"])
    elif op == "cannot-fit":
        state.cannot_fit(address, msg["key"], msg["peak"], msg["limit"],
                         str(msg.get("reason", "")))
    elif op == "scattered-data":
        refused = state.grants.received(state, address, msg, state.clock())
        if refused and address in state.workers:
            state.to_worker(state.workers[address], {"op": "free-keys", "keys": refused})
    elif op == "register-worker":
        raise InvalidMessage("register-worker: this worker has registered already", op)

