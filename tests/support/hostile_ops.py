"""Generated operations for hostile-input tests: a valid template per op, with fields (at
any depth) replaced by junk or removed."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=6) | st.binary(max_size=6) | st.sampled_from(["x", "y", "tcp://a:1"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4) | st.just("key"),
                                                        c, max_size=3),
    max_leaves=8)
TEMPLATES: dict[str, dict[str, Any]] = {
    "update-graph": {"tasks": [{"key": "z", "run_spec": b"f", "deps": ["x"],
                                "priority": [0, 1]}], "wants": ["z"]},
    "release-keys": {"keys": ["y"]}, "cancel-keys": {"keys": ["y"]},
    "persist-keys": {"keys": ["y"]}, "replicate": {"keys": ["x"], "n": 2},
    "who-has": {"keys": ["x"], "id": 1}, "info": {"id": 2},
    "retire": {"id": 3, "names": [], "n": 1}, "wait-for-workers": {"id": 4, "n": 1},
    "heartbeat-client": {}, "register-client": {"client": "c"},
    "scatter-plan": {"id": 5, "keys": {"s": 8}},
    "scattered-data": {"grant": "g", "keys": {"s": 8}, "types": {"s": "int"}},
    "task-finished": {"key": "x", "nbytes": 8, "type": "int"},
    "task-erred": {"key": "x", "exception": b"", "traceback": "", "text": "E"},
    "add-keys": {"keys": {"x": 8}}, "lost-keys": {"keys": ["x"]},
    "missing-data": {"key": "y", "dep": "x", "worker": "tcp://a:1"},
    "heartbeat-worker": {"memory": {"limit": 100, "managed": 1,
                                    "thresholds": {"target": 0.6}},
                         "executing": 0, "ready": 0},
    "worker-status": {"status": "paused"}, "memory-restart": {"reason": "r"},
    "reschedule": {"key": "x"}, "cannot-fit": {"key": "x", "peak": 1, "limit": 1},
    "register-worker": {
        "address": "tcp://c:1", "name": "c", "nthreads": 1, "host": "c", "node": "",
        "pid": 1, "keys": {}, "memory": {}},
}


@st.composite
def operations(draw: st.DrawFn, ops: frozenset[str]) -> dict[str, Any]:
    """A valid operation with some fields replaced by junk, at any depth."""
    op = draw(st.sampled_from(sorted(ops)))
    msg: dict[str, Any] = {"op": op, **TEMPLATES[op]}
    for field in draw(st.lists(st.sampled_from(sorted(msg)), max_size=2, unique=True)):
        value = msg[field]
        if isinstance(value, list) and value and draw(st.booleans()):
            item = value[0]
            if isinstance(item, dict) and draw(st.booleans()):
                inner = dict(item)
                inner[draw(st.sampled_from(sorted(inner)))] = draw(junk)
                msg[field] = [inner]
            else:
                msg[field] = [draw(junk)]
        elif draw(st.booleans()):
            del msg[field]
        else:
            msg[field] = draw(junk)
    return msg
